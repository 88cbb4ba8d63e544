"""
Desired-state management: groups of devices, versioned profiles of SyncML
commands assigned to groups, and the per device × profile convergence that
applies, reads back, verifies, re-applies and removes them.

The pure parts: L{variables} (per-device values in a profile),
L{profiles} (a profile file → validated steps; a step → what a device gets),
L{values} (type-aware comparison of a read-back), L{rules} (rule groups),
L{convergence} (the device × profile state table) and L{engine} (the sans-IO
reconciliation: desired set + applied state + device answers → commands and
state changes). The units of work: L{catalog} (profiles, groups,
assignments), L{reconciler} (the check-in's hooks), L{report} (compliance),
L{actions} (wipe, lock, reboot), with L{tally} (their counts).
"""
