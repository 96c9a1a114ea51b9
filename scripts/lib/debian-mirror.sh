# Sourced by scripts that fetch Debian packages (offline-images, compose-v2).
#
# debian_mirror prints the URI of Debian's own archive as this machine's apt
# is configured to reach it: the source whose Release file says Origin and
# Label "Debian". apt's sources may list other archives too (a cloud SDK,
# nodesource, a security mirror with its own label); those are skipped, and
# no host name is ever written into the repository.
debian_mirror() {
    local found
    found=$(_debian_mirror_from_policy)
    if [ -z "$found" ]; then
        # A machine whose package lists were never fetched has no Release data yet.
        apt-get update >/dev/null 2>&1 || true
        found=$(_debian_mirror_from_policy)
    fi
    printf '%s' "$found"
}

_debian_mirror_from_policy() {
    apt-cache policy 2>/dev/null | awk '
        $1 ~ /^[0-9]+$/ && $2 ~ /^(https?|file):/ { uri = $2; next }
        /release / && /o=Debian,/ && /l=Debian,/ && uri != "" { print uri; exit }'
}
