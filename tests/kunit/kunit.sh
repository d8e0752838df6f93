#!/bin/bash
# timeout: 450
# kernels: uml
# (The UML kernel of tools/uml-kernel is the one with CONFIG_KUNIT=y.)
#
# The guest side of tests/kunit/run.  The runner (tests/vm/guest-run) has
# just insmod'ed $DMR_KO, the module with its KUnit suites linked in
# (make KUNIT=1), after clearing the kernel log; KUnit ran every suite as
# the module went live, before insmod returned.  This saves the KTAP
# that KUnit printed to $OUT/kunit.ktap, for the host's kunit.py parse,
# and fails unless the log shows a run whose every test passed.  The
# runner then scans the same log for splats (KASAN, lockdep, WARNING) and
# removes the module, which runs the suites' exit and checks for leaks.
set -u

[ -n "${DMR_KO:-}" ] || { echo "not ok - no module was loaded (DMR_KO is empty)"; exit 1; }

ktap=$OUT/kunit.ktap
dmesg --notime >"$ktap" || { echo "not ok - dmesg failed"; exit 1; }

if ! grep -q '^KTAP version' "$ktap"; then
	echo "not ok - no KTAP in the kernel log: the module ran no suite"
	echo "  (is CONFIG_KUNIT=y, and was the module built with KUNIT=1?)"
	exit 1
fi
# The top level: "1..N" suites, then "ok|not ok <i> <suite>" for each.
plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\)$/\1/p' "$ktap" | head -n 1)
suites=$(grep -cE '^(not )?ok [0-9]+ ' "$ktap")
bad=$(grep -cE '^[[:space:]]*not ok ' "$ktap")
echo "# $suites of ${plan:-?} suites reported, $bad 'not ok' line(s)"
grep -E '^(not )?ok [0-9]+ ' "$ktap" | sed 's/^/# /'
if [ -z "$plan" ] || [ "$plan" -eq 0 ] || [ "$suites" -ne "$plan" ]; then
	echo "not ok - KUnit planned ${plan:-no} suites and reported $suites"
	exit 1
fi
if [ "$bad" -gt 0 ]; then
	echo "not ok - $bad failed test(s) or suite(s):"
	grep -E '^[[:space:]]*not ok ' "$ktap"
	exit 1
fi
echo "ok - every KUnit suite passed"
