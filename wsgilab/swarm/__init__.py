"""The stack on Docker Swarm: ``scripts/swarm up`` and ``down`` (``python -m wsgilab.swarm``).

docker-compose.yml stays the one description of the stack. ``render``
turns it, merged with scripts/swarm.yml and read through ``docker compose
config`` (so ``.env`` and the shell's settings apply as under compose), into
the stack file ``docker stack deploy`` takes; ``engine`` drives Docker: the
swarm itself (created, and later left, only where there was none), the
loopback-only publishing, the deploy and the wait for every app to answer.
``cli`` is the command line. Standard library only, so it runs from a
checkout with the system's python3.
"""
