"""What the stack's PostgreSQL needs of a swarm before a deploy, and what ``scripts/swarm down --volumes`` removes.

- **Its two passwords, as Docker secrets** (``ensure_secrets``): on
  compose, the one-shot db-secrets service writes them into volumes
  (wsgilab.container.db_secrets); a swarm restarts a service that ends, and
  a task may run on any node, so here scripts/swarm makes them once, from
  ``WSGILAB_DB_PASSWORD`` or at random, before the stack is deployed. A
  secret cannot be read back, so the apps' one carries a label with a salted
  scrypt digest of its password: a different WSGILAB_DB_PASSWORD later is
  refused with the same message db-secrets gives, instead of leaving the
  apps a password the database does not know.
- **A node to keep its data on** (``pin_node``): the data volume lives on
  the node the task runs on, so the db service is placed on the node
  labelled ``wsgilab.db=true`` (scripts/swarm.yml). Where no node has the
  label, the node scripts/swarm runs on gets it.
- ``remove_data``: the data volume and the secrets, once the stack is gone.
  Without it, ``scripts/swarm down`` keeps both, and so stays in the swarm
  it started: leaving a swarm deletes its secrets, and the kept data knows
  only the passwords they held.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable

from wsgilab.container.db_secrets import PASSWORD_DIFFERS
from wsgilab.swarm.engine import SwarmError, docker, node_id
from wsgilab.swarm.render import SECRET_VOLUMES, secret_name

#: The node label that says where the database's data is.
NODE_LABEL = "wsgilab.db"
#: The label on the apps' password's secret: "salt:digest", each hex (``_digest``).
DIGEST_LABEL = "wsgilab.scrypt"
#: The apps' role's password (the other is the superuser's).
APPS_SECRET = "db-password"
#: The data volume's key in docker-compose.yml (the stack names it STACK_db-data).
DATA_VOLUME = "db-data"


def _digest(password: str, salt: bytes) -> str:
    return hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1).hex()


def ensure_secrets(stack: str, chosen: str, say: Callable[[str], None]) -> None:
    """Make each of the database's secrets that is missing; SwarmError where ``chosen`` differs from the one kept."""
    for key in sorted(SECRET_VOLUMES.values()):
        name = secret_name(stack, key)
        labels = docker("secret", "inspect", "--format", "{{json .Spec.Labels}}", name, check=False).strip()
        if labels:
            if key == APPS_SECRET and chosen and not _same(chosen, labels):
                raise SwarmError(PASSWORD_DIFFERS.format(start_afresh=f"scripts/swarm down --volumes --stack {stack}"))
            continue
        password = (chosen if key == APPS_SECRET else "") or secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        label = ["--label", f"{DIGEST_LABEL}={salt.hex()}:{_digest(password, salt)}"] if key == APPS_SECRET else []
        docker("secret", "create", *label, name, "-", input_text=password)
        say(f"made the Docker secret {name}")


def _same(password: str, labels_json: str) -> bool:
    """Whether ``password`` is the one whose digest the secret's labels (as ``{{json .Spec.Labels}}``) hold."""
    salt, _, digest = str((json.loads(labels_json) or {}).get(DIGEST_LABEL, "")).partition(":")
    return bool(digest) and hmac.compare_digest(_digest(password, bytes.fromhex(salt)), digest)


def pin_node(say: Callable[[str], None]) -> None:
    """Label this node ``wsgilab.db=true`` where no node of the swarm has the label."""
    labelled = docker("node", "ls", "--filter", f"node.label={NODE_LABEL}=true", "--quiet").split()
    if labelled:
        return
    docker("node", "update", "--label-add", f"{NODE_LABEL}=true", node_id())
    say(f"the database's data stays on this node (label {NODE_LABEL}=true; docs/swarm.md)")


def stacks_with_data() -> list[str]:
    """The stacks whose data volume is on this node (the label docker stack deploy gives what it creates)."""
    shown = docker("volume", "ls", "--format", '{{.Label "com.docker.stack.namespace"}} {{.Name}}')
    return sorted(stack for stack, _, name in (line.partition(" ") for line in shown.splitlines())
                  if stack and name == f"{stack}_{DATA_VOLUME}")


def has_data(stack: str) -> bool:
    """Whether the stack's data volume is on this node."""
    return bool(docker("volume", "ls", "--quiet", "--filter", f"name=^{stack}_{DATA_VOLUME}$").split())


def remove_data(stack: str, say: Callable[[str], None], deadline_s: float = 60) -> None:
    """Remove the stack's data volume and the database's secrets (the stack's containers must be gone)."""
    volume = f"{stack}_{DATA_VOLUME}"
    deadline = time.monotonic() + deadline_s
    while has_data(stack):
        if not docker("volume", "rm", volume, check=False) and time.monotonic() > deadline:
            raise SwarmError(f"the volume {volume} is still in use: `docker volume rm {volume}` once it is not")
        time.sleep(0.5)
    names = [secret_name(stack, key) for key in sorted(SECRET_VOLUMES.values())]
    present = [name for name in names if docker("secret", "inspect", "--format", "x", name, check=False).strip()]
    if present:
        docker("secret", "rm", *present)
    say(f"removed the database's data ({volume}) and its secrets")
