"""The rule engine: a pure library. Readings as numpy columns in, alert transitions out.

It imports nothing from the rest of Mekong IOC but the device contract (:mod:`contract.fields`,
which a pack's field names are checked against) and the storage layout's names
(:mod:`storage.layout`: status reports come keyed by their measurement): callers describe their devices with
:class:`rules.model.DeviceInfo` and hand over readings as columns (:class:`rules.model.Readings`).
"""
