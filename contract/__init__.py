"""The device contract shared by the simulators and the ingest service.

Topics, kinds, fields with their units and physical ranges, and the fleet registry.
`docs/contract.md` and `docs/asyncapi.yaml` describe the same contract for device makers;
`tests/unit/test_contract_docs.py` keeps the three in agreement.
"""
