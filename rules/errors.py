"""The rules exception tree.

RulesError
└── PackError     a rule pack that cannot be loaded: names the file, the rule and the problem
"""

from __future__ import annotations


class RulesError(Exception):
    """Base of every error the rules package raises."""


class PackError(RulesError):
    """A rule pack is invalid; the message says where and why."""
