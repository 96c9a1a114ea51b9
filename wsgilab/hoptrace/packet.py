"""``hoptrace packet``: the uwsgi packet nginx sent for a request, beside the same request in HTTP.

    curl -s localhost:8080/raw/environ | hoptrace packet     # the raw app on uWSGI: RAW_SERVER=uwsgi

To gunicorn nginx sends HTTP: a request line and headers, from which
gunicorn builds the environ itself. To uWSGI it sends no HTTP at all: one
uwsgi packet holding the environ's variables, already built (nginx's
``uwsgi_param`` lines, then every request header as ``HTTP_*``), and uWSGI
only unpacks it (``wsgilab.container.uwsgi_protocol`` says how a packet is
laid out).

The packet is rebuilt from what ``/<app>/environ`` shows of the environ
uWSGI made of it: its string variables, less what uWSGI added (the
``wsgi.*`` and ``uwsgi.*`` objects, and ``SCRIPT_NAME``, which uWSGI split off
``PATH_INFO`` for the app's mount). nginx does not send ``SCRIPT_NAME`` here.
The variables are in the order ``/environ`` lists them (by group, each
sorted by name), not the wire's; the sizes are the wire's, and uWSGI's own
record of the request (``hoptrace show ID``: "read the uwsgi packet: ... in
N bytes") gives the same N. (That record's "vars" counts keys and values
apart, and the SCRIPT_NAME uWSGI adds: 44 for 21.)
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from typing import Any

from wsgilab.container.labkit import flattened
from wsgilab.container.uwsgi_protocol import MODIFIER_WSGI, encode_request

class NotUwsgi(ValueError):
    """The environ given was not built by uWSGI from a packet; the message says what to do."""


def packet_variables(environ: dict[str, Any]) -> dict[str, str]:
    """The variables of the packet nginx sent, from the environ ``/environ`` showed (grouped or flat)."""
    environ = flattened(environ)
    if "uwsgi.version" not in environ:
        server = environ.get("SERVER_SOFTWARE") or "not uWSGI"
        raise NotUwsgi(f"this environ was built by {server} from an HTTP request: nginx sent it no uwsgi packet. "
                       "Put the app on uWSGI (RAW_SERVER=uwsgi docker compose up -d) and ask /environ again")
    # nginx's variables have no dot in their names; dotted keys are what uWSGI (wsgi.*, uwsgi.*) and the app's
    # layers added
    variables = {key: value for key, value in environ.items() if isinstance(value, str) and "." not in key}
    script_name = variables.pop("SCRIPT_NAME", "")
    variables["PATH_INFO"] = script_name + variables.get("PATH_INFO", "")
    return variables


def _hex(data: bytes) -> str:
    return " ".join(f"{byte:02x}" for byte in data)


def describe_packet(variables: dict[str, str]) -> list[str]:
    """The packet, a line per part: the header, then each variable's lengths and text."""
    packet = encode_request(variables)
    size = struct.unpack("<H", packet[1:3])[0]
    lines = [f"the uwsgi packet nginx sent, rebuilt from the environ: a 4-byte header, then {len(variables)} "
             f"variables in {size} bytes",
             f"  {_hex(packet[:4])}  header: modifier1 {MODIFIER_WSGI} (a WSGI request), {size} bytes of "
             f"variables (0x{size:04x}, little-endian), modifier2 0"]
    for key, value in variables.items():
        raw_key, raw_value = key.encode("latin-1"), value.encode("latin-1")
        lines.append(f"  {_hex(struct.pack('<H', len(raw_key)))} {key}  "
                     f"{_hex(struct.pack('<H', len(raw_value)))} {value}")
    length = variables.get("CONTENT_LENGTH") or "0"
    lines.append(f"  then the body as it is: {length} bytes (CONTENT_LENGTH)")
    return lines


def describe_http(variables: dict[str, str]) -> list[str]:
    """The same request as HTTP/1.1, as nginx would send it to gunicorn: a request line and headers."""
    target = variables.get("REQUEST_URI") or variables.get("PATH_INFO", "/")
    lines = ["the same request in HTTP, as gunicorn would get it (and build the environ itself):",
             f"  {variables.get('REQUEST_METHOD', 'GET')} {target} HTTP/1.1"]
    for key in sorted(variables):
        if key.startswith("HTTP_"):
            lines.append(f"  {key[5:].replace('_', '-').title()}: {variables[key]}")
    for key, header in (("CONTENT_TYPE", "Content-Type"), ("CONTENT_LENGTH", "Content-Length")):
        if variables.get(key):
            lines.append(f"  {header}: {variables[key]}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hoptrace packet", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("file", nargs="?", help="what /<app>/environ answered, as JSON (default: stdin)")
    args = parser.parse_args(argv)
    try:
        if args.file:
            with open(args.file, encoding="utf-8") as given:
                text = given.read()
        elif sys.stdin.isatty():
            parser.error("pipe /<app>/environ's JSON in: curl -s localhost:8080/raw/environ | hoptrace packet")
        else:
            text = sys.stdin.read()
        variables = packet_variables(json.loads(text))
    except OSError as error:
        print(f"hoptrace packet: {args.file}: {error.strerror or error}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as error:
        print(f"hoptrace packet: not the JSON /environ answers ({error.msg}, line {error.lineno})", file=sys.stderr)
        return 2
    except NotUwsgi as error:
        print(f"hoptrace packet: {error}", file=sys.stderr)
        return 2
    print("\n".join([*describe_packet(variables), "", *describe_http(variables)]))
    return 0
