# Shared by cross/build and cross/unit-tests: the Rust target, linker and
# flags of an OpenWrt architecture, and what they need installed.
# shellcheck shell=bash

# cross_setup OPENWRT_ARCH build|test: sets $target and the cargo
# environment; prints the extra cargo arguments to args[].
cross_setup() {
    local arch=$1 mode=$2 build_std=0 zig_target="" flags="" link_arg=-Wl,-T,
    case "$arch" in
    mips_24kc)
        target=mips-unknown-linux-musl build_std=1
        zig_target="mips-linux-musleabi -mcpu=mips32r2"
        # MIPS musl targets link dynamically unless told otherwise.
        flags="-C target-feature=+crt-static"
        ;;
    mipsel_24kc)
        target=mipsel-unknown-linux-musl build_std=1
        zig_target="mipsel-linux-musleabi -mcpu=mips32r2"
        flags="-C target-feature=+crt-static"
        ;;
    arm_cortex-a7_neon-vfpv4)
        # zig's CPU string (cargo-zigbuild's) is `+vfp3 -d32 -neon`: the C
        # parts (musl) stay within d0-d15; Rust's own code may use d16-d31,
        # which these cores have.
        target=armv7-unknown-linux-musleabihf build_std=1
        zig_target="arm-linux-musleabihf -mcpu=generic+v7a+vfp3-d32+thumb2-neon"
        ;;
    arm_cortex-a9)
        target=armv7-unknown-linux-musleabihf build_std=1
        zig_target="arm-linux-musleabihf -mcpu=generic+v7a+vfp3-d32+thumb2-neon"
        # Many Cortex-A9 routers have VFPv3-D16: no d16-d31 registers, in
        # Rust's code either (checked: llvm-objdump finds none in the binary).
        flags="-C target-feature=-d32"
        ;;
    aarch64_cortex-a53 | aarch64_generic)
        target=aarch64-unknown-linux-musl
        ;;
    x86_64)
        target=x86_64-unknown-linux-musl
        ;;
    *)
        die "unknown OpenWrt architecture '$arch' (mips_24kc, mipsel_24kc, arm_cortex-a7_neon-vfpv4, arm_cortex-a9, aarch64_cortex-a53, aarch64_generic, x86_64)"
        ;;
    esac
    need_rust
    work="target/cross/$arch"
    mkdir -p "$work"
    local env_target
    env_target=$(echo "$target" | tr 'a-z-' 'A-Z_')
    export CARGO_TARGET_DIR="$work"
    args=(--locked --no-default-features --target "$target")
    if [ "$build_std" = 1 ]; then
        grep -q '^rust-src' <<<"$(rustup component list --installed)" || {
            step "adding rustup component rust-src"
            rustup component add rust-src || die "cannot add rust-src"
        }
        python3 -m ziglang version >/dev/null 2>&1 || {
            step "installing zig (PyPI: ziglang)"
            python3 -m pip install --quiet ziglang || die "cannot install ziglang from PyPI"
        }
        local linker="$PWD/$work/zig-cc"
        printf '#!/bin/sh\nexec python3 -m ziglang cc -target %s "$@"\n' "$zig_target" >"$linker"
        chmod 755 "$linker"
        export "CARGO_TARGET_${env_target}_LINKER=$linker"
        # std built with the program: RUSTC_BOOTSTRAP lets the stable
        # toolchain take -Z options.
        export RUSTC_BOOTSTRAP=1
        flags="$flags -C link-self-contained=no"
        if [ "$mode" = build ]; then
            # For size: no unwinding machinery, std built for size (and
            # with the flags below).
            flags="$flags -Z unstable-options -C panic=immediate-abort"
            args+=(-Z build-std=std,panic_abort -Z build-std-features=optimize_for_size)
        else
            args+=(-Z build-std)
        fi
    else
        grep -qx "$target" <<<"$(rustup target list --installed)" || {
            step "adding rustup target $target"
            rustup target add "$target" || die "cannot add the rustup target $target"
        }
        # rust-lld for both: GNU ld (x86_64's default through cc) will not
        # drop the unwind tables that musl's crtbegin.o refers to.
        export "CARGO_TARGET_${env_target}_LINKER=rust-lld"
        link_arg=--script=
    fi
    if [ "$mode" = build ]; then
        # The router build, for size (BENCHMARKS.md measures each), on
        # every target; the unit tests keep the defaults, which unwind.
        # - no file/line in panic messages;
        # - `{:?}` prints nothing: what users and logs see is Display;
        # - code for a fixed address: these are static executables (no
        #   PIE), and PIC costs most on MIPS, whose calls go through the GOT;
        # - no unwind tables: a panic aborts, nothing reads them; the
        #   linker drops those of the C parts and of rustup's std, and
        #   MIPS' .pdr (cross/discard.ld; cross/build checks the result).
        export RUSTC_BOOTSTRAP=1
        flags="$flags -Z location-detail=none -Z fmt-debug=none -C relocation-model=static -C force-unwind-tables=no"
        flags="$flags -C link-arg=$link_arg$PWD/cross/discard.ld"
    fi
    export "CARGO_TARGET_${env_target}_RUSTFLAGS=$flags"
    if [ "$mode" = test ]; then
        local qemu
        case "$arch" in
        mipsel*) qemu=qemu-mipsel ;;
        mips*) qemu=qemu-mips ;;
        arm*) qemu=qemu-arm ;;
        aarch64*) qemu=qemu-aarch64 ;;
        *) qemu=qemu-x86_64 ;;
        esac
        need_commands "$qemu:qemu-user"
        export "CARGO_TARGET_${env_target}_RUNNER=$qemu"
    fi
}
