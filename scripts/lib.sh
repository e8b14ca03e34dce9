# Shared by the scripts: install what is missing, or say what is.
# shellcheck shell=bash

die() {
    echo "error: $*" >&2
    exit 1
}

step() {
    echo "==> $*" >&2
}

# need_commands "cmd:package" ...: install the Debian packages of missing
# commands (as root), or fail naming them.
need_commands() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        die "missing Debian packages: ${missing[*]} (run: sudo apt-get install ${missing[*]}, or run this script as root)"
    fi
    # Debian starts daemons on install; chronyd and ntpd would steer this
    # machine's clock. policy-rc.d exiting 101 forbids every start.
    if ! grep -qs 'exit 101' /usr/sbin/policy-rc.d; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
    fi
    step "installing ${missing[*]}"
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed"
}

need_rust() {
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust with rustup (https://rustup.rs)"
    local component
    for component in rustfmt clippy; do
        # A here-string, not a pipe: with pipefail, grep -q leaving early
        # could fail the pipeline through SIGPIPE.
        if ! grep -q "^$component" <<<"$(rustup component list --installed 2>/dev/null)"; then
            step "adding rustup component $component"
            rustup component add "$component" || die "cannot add the rustup component $component"
        fi
    done
}

# cargo-fuzz needs a nightly toolchain and the cargo-fuzz tool.
need_fuzz() {
    rustup run nightly rustc --version >/dev/null 2>&1 ||
        die "no nightly Rust toolchain: cargo-fuzz needs one (rustup toolchain install nightly)"
    if ! cargo fuzz --version >/dev/null 2>&1; then
        step "installing cargo-fuzz"
        cargo install --locked cargo-fuzz || die "cannot install cargo-fuzz from crates.io"
    fi
}
