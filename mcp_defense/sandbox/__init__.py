"""Kernel enforcement of archetypes (Linux Landlock): the server itself cannot reach what its
archetype does not allow, whatever it does on its own. See plan.py (archetype → ruleset),
landlock.py (the syscalls) and exec.py (the trampoline that applies it before exec)."""
