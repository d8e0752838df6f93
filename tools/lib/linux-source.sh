# SPDX-License-Identifier: GPL-2.0-only
# shellcheck shell=bash
#
# Shared by tools/guest-kernel and tools/debug-kernel (sourced, not run): the
# Debian linux-source-6.12 tree both build from, unpacked once into
# $CACHE/linux-source-6.12 (the tree tests/kunit/run uses, with the same stamp
# and under the same lock), and the allnoconfig + fragment configuration with
# its check that every fragment line survived olddefconfig.
#
# The caller sets PROG (the name in messages), REPO and FRAGMENT (and KARCH,
# the kernel's ARCH=, when it is not x86_64: tools/uml-kernel's "um"), then calls
# source_init, which sets TARBALL and SOURCE_ID (name, size and mtime of the
# tarball: part of every build key).
#
# Environment:
#   DMR_KUNIT_CACHE   cache dir (default /var/cache/dm-replication)

CACHE=${DMR_KUNIT_CACHE:-/var/cache/dm-replication}
SRC_NAME=linux-source-6.12
TREE=$CACHE/$SRC_NAME
STAMP=$CACHE/$SRC_NAME.stamp
KARCH=${KARCH:-x86_64}

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
	say "ERROR: $*"
	exit 1
}

find_tarball() {
	local t="" f
	for f in "/usr/src/$SRC_NAME"*.tar.xz; do
		[ -f "$f" ] && t=$f
	done
	printf '%s' "$t"
}

# Find the tarball (installing it when absent) and set TARBALL and SOURCE_ID.
source_init() {
	TARBALL=$(find_tarball)
	if [ -z "$TARBALL" ] && [ -x "$REPO/tools/install-deps" ]; then
		say "no /usr/src/$SRC_NAME*.tar.xz; running tools/install-deps"
		"$REPO/tools/install-deps" >&2 || die "tools/install-deps failed"
		TARBALL=$(find_tarball)
	fi
	[ -n "$TARBALL" ] || die "no /usr/src/$SRC_NAME*.tar.xz (apt-get install $SRC_NAME)"
	SOURCE_ID="$(basename "$TARBALL") $(stat -c '%s %Y' "$TARBALL")"
}

# build_key: a short hash of the source and the fragment.
build_key() {
	printf 'arch %s\nsource %s\n%s\n' "$KARCH" "$SOURCE_ID" "$FRAGMENT" |
		sha256sum | cut -c1-16
}

# Take $CACHE/.lock on fd 9 (held until the caller exits): the source tree is
# shared by the tools that build from it.
lock_cache() {
	mkdir -p "$CACHE"
	exec 9>"$CACHE/.lock"
	if ! flock -n 9; then
		say "waiting for another user of $CACHE/.lock"
		flock 9
	fi
}

# Unpack the tree once, with its stamp: any of the tools may unpack it, and
# the others then use it as it is.  Called with the lock
# held.
unpack() {
	local want=$SOURCE_ID have tmp top
	have=$(cat "$STAMP" 2>/dev/null || true)
	if [ "$want" = "$have" ] && [ -f "$TREE/Makefile" ] &&
		[ -f "$TREE/tools/testing/kunit/kunit.py" ]; then
		return 0
	fi
	say "unpacking $TARBALL into $TREE (once; takes a minute)"
	rm -f "$STAMP"
	rm -rf "$CACHE"/.unpack.*
	tmp=$(mktemp -d "$CACHE/.unpack.XXXXXX")
	tar -xJf "$TARBALL" -C "$tmp" || die "unpacking $TARBALL failed"
	top=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d)
	if [ -z "$top" ] || [ "$(printf '%s\n' "$top" | wc -l)" != 1 ] ||
		[ ! -f "$top/Makefile" ]; then
		die "$TARBALL: unexpected layout"
	fi
	rm -rf "$TREE"
	mv "$top" "$TREE"
	rmdir "$tmp"
	# Objects built from another tree are stale (kunit-build*: the KUnit
	# kernels of stops before 22).
	rm -rf "$CACHE"/kunit-build*
	echo "$want" >"$STAMP"
}

# Every line of the fragment must have survived olddefconfig (a missing
# dependency drops a symbol silently): CONFIG_X=value lines must be in the
# .config as they are, "# CONFIG_X is not set" lines must not be set there.
check_config() {
	local cfg=$1 line sym bad=
	while read -r line; do
		case "$line" in
		CONFIG_*=*) grep -qxF "$line" "$cfg" || bad="$bad ${line%%=*}" ;;
		"# CONFIG_"*" is not set")
			sym=${line#\# }
			sym=${sym%% *}
			! grep -q "^$sym=" "$cfg" || bad="$bad $sym(set)"
			;;
		esac
	done <<<"$FRAGMENT"
	[ -z "$bad" ] || die "not as asked in $cfg:$bad (a dependency is missing from the fragment)"
}

# configure OUT: allnoconfig plus the fragment, then olddefconfig, into OUT
# (log: OUT/build.log, started afresh), and check the result.
configure() {
	local out=$1
	mkdir -p "$out"
	printf '%s\n' "$FRAGMENT" >"$out/fragment.config"
	{
		make -C "$TREE" O="$out" ARCH="$KARCH" \
			KCONFIG_ALLCONFIG="$out/fragment.config" allnoconfig &&
			make -C "$TREE" O="$out" ARCH="$KARCH" olddefconfig
	} >"$out/build.log" 2>&1 || {
		tail -n 30 "$out/build.log" >&2
		die "configuring failed (log: $out/build.log)"
	}
	check_config "$out/.config"
}

# kmake OUT TARGET...: make in OUT, appending to OUT/build.log; on failure
# show the errors and die.
kmake() {
	local out=$1
	shift
	if ! make -C "$TREE" O="$out" ARCH="$KARCH" -j"$JOBS" "$@" \
		>>"$out/build.log" 2>&1; then
		grep -E 'error|Error' "$out/build.log" | head -n 20 >&2 || true
		tail -n 30 "$out/build.log" >&2
		die "make $* failed (log: $out/build.log)"
	fi
}
