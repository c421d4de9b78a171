# Sourced by scripts/compose and scripts/test: installs missing Debian packages, saying which.
# What each command needs is listed once, in scripts/packages/<command>.
# Usage: ensure_packages PKG...   or   ensure_packages $(package_list compose)

# The packages named in scripts/packages/$1, without comments.
package_list() {
    sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$(dirname "${BASH_SOURCE[0]}")/packages/$1" |
        tr -s '[:space:]' '\n'
}

ensure_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
            missing+=("$pkg")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "molten: these Debian packages are needed: ${missing[*]} (run as root to install them)" >&2
        return 1
    fi
    echo "molten: installing missing Debian packages: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "molten: cargo is not on PATH; install Rust (rustup) first" >&2
        return 1
    fi
}
