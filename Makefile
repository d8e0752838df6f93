# SPDX-License-Identifier: GPL-2.0-only
#
# dm-replication: out-of-tree build, checks, tests and demo.
#
#   make                  build dm-replication.ko for KVER (see below) and replctl
#   make replctl          build tools/replctl/replctl, the operator's tool
#   make KVER=6.1.0-56-amd64   build against another installed kernel
#   make KDIR=/path/to/tree    build against a configured kernel tree
#   make check            checkpatch, sparse, W=1 builds, KUnit, VM tests
#   make demo             the replication story, in a VM
#   make bench            benchmarks against the peers, in a VM (bench/run)
#   make modules_install  install into /lib/modules/$(KVER)
#   make clean
#
# KVER defaults to the running kernel when its headers are installed, else to
# the newest installed Debian 6.12 kernel.  Each kernel gets its own build
# folder, build/$(KVER)/, so builds for several kernels do not clash.

REPO := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
SOURCES := dm-replication.c dm-replication-io.c dm-replication-commit.c \
	   dm-replication-core.c dm-replication-cow.c dm-replication-format.c \
	   dm-replication-primary.c \
	   dm-replication.h Kbuild
HEADERS_ONLY := $(wildcard $(REPO)/dm-replication-*.h)

ifeq ($(KVER),)
ifneq ($(KDIR),)
KVER := $(shell cat $(KDIR)/include/config/kernel.release 2>/dev/null)
else
KVER := $(shell $(REPO)/tools/kernels --default 2>/dev/null)
endif
endif
KDIR ?= /lib/modules/$(KVER)/build
BUILD := $(REPO)/build/$(or $(KVER),unknown)
W ?= 1

# KUNIT=1 builds the module with its KUnit suites (tests/kunit/*.c) linked in,
# into build/$(KVER)-kunit/, for a kernel with CONFIG_KUNIT=y: the UML kernel
# of tools/uml-kernel (tests/kunit/run).  Loading it runs the suites.
KUNIT_SOURCES :=
KUNIT_ARGS :=
ifeq ($(KUNIT),1)
BUILD := $(BUILD)-kunit
KUNIT_SOURCES := $(notdir $(wildcard $(REPO)/tests/kunit/*.c))
KUNIT_ARGS := CONFIG_DM_REPLICATION_KUNIT_TEST=y
endif

.PHONY: all modules replctl deps modules_install clean check demo bench kunit vmtest soak debug-check uml-check \
	checkpatch sparse clean-kver

all: modules replctl

# The operator's tool: userspace C against libdevmapper (libdevmapper-dev).
REPLCTL := $(REPO)/tools/replctl/replctl
REPLCTL_SRC := $(wildcard $(REPO)/tools/replctl/*.c $(REPO)/tools/replctl/*.h)
REPLCTL_CFLAGS := -Wall -Wextra -Werror -O2 -g
replctl: $(REPLCTL)

$(REPLCTL): $(REPLCTL_SRC)
	@pkg-config --exists devmapper || $(REPO)/tools/install-deps
	$(CC) $(REPLCTL_CFLAGS) $(CFLAGS) $$(pkg-config --cflags devmapper) \
		-o $@ $(filter %.c,$^) $$(pkg-config --libs devmapper)

deps:
	@$(REPO)/tools/install-deps

# Build in build/$(KVER)/, where the sources are linked, then copy the result
# to dm-replication.ko (build/$(KVER)/ and the top of the tree).
modules:
	@test -n "$(KVER)" || $(REPO)/tools/install-deps
	@test -d "$(KDIR)" || $(REPO)/tools/install-deps
	@test -d "$(KDIR)" || { echo "no kernel headers at $(KDIR)" >&2; exit 1; }
	@mkdir -p $(BUILD)
	@for f in $(SOURCES) $(notdir $(HEADERS_ONLY)); do \
		ln -sfn ../../$$f $(BUILD)/$$f; done
	@for f in $(KUNIT_SOURCES); do \
		ln -sfn ../../tests/kunit/$$f $(BUILD)/$$f; done
	$(MAKE) -C $(KDIR) M=$(BUILD) CONFIG_DM_REPLICATION=m $(KUNIT_ARGS) \
		W=$(W) modules
	cp $(BUILD)/dm_replication.ko $(BUILD)/dm-replication.ko
	$(if $(KUNIT_ARGS),,cp $(BUILD)/dm_replication.ko $(REPO)/dm-replication.ko)

modules_install: modules
	$(MAKE) -C $(KDIR) M=$(BUILD) CONFIG_DM_REPLICATION=m modules_install
	depmod -a $(KVER)

check:
	@$(REPO)/tests/check

demo:
	@$(REPO)/tools/demo

# Not part of check: speed is measured here, never in timed tests.
bench:
	@$(REPO)/bench/run

kunit:
	@$(REPO)/tests/kunit/run

vmtest:
	@$(REPO)/tests/vm/run

# Not part of check: the tests with a "# soak:" header, at their soak size
# (DMR_SOAK=1 inside the VM) and with their soak time limit.
soak:
	@DMR_SOAK=1 $(REPO)/tests/vm/run $$(grep -l '^# soak:' $(REPO)/tests/vm/tests/*.sh)

# Not part of check either (a cold build of the kernel takes ~35 min, and the
# tests run several times slower on it): the data path on the debug kernel of
# tools/debug-kernel, with KASAN, lockdep and atomic-sleep checks.
DEBUG_TESTS := 30-differential 35-concurrent-fio 36-race 46-fault-matrix \
	57-failover-crash
debug-check:
	@$(REPO)/tools/debug-kernel >/dev/null
	@$(REPO)/tests/vm/run -k debug $(patsubst %,$(REPO)/tests/vm/tests/%.sh,$(DEBUG_TESTS))

# The same tests on the User-Mode Linux kernel of tools/uml-kernel (KASAN,
# lockdep, atomic-sleep checks; ~8 min cold build, native speed, one CPU).
# Part of check (tests/check); a failed kernel build prints a summary line
# that counts as a failure.
uml-check:
	@$(REPO)/tools/uml-kernel >/dev/null || { echo "FAIL tools/uml-kernel"; echo "0 passed, 1 failed"; exit 1; }
	@$(REPO)/tests/vm/run -k uml $(patsubst %,$(REPO)/tests/vm/tests/%.sh,$(DEBUG_TESTS))

checkpatch:
	@$(REPO)/tests/checkpatch

sparse:
	@test -d "$(KDIR)" || $(REPO)/tools/install-deps
	@mkdir -p $(BUILD)
	@for f in $(SOURCES) $(notdir $(HEADERS_ONLY)); do \
		ln -sfn ../../$$f $(BUILD)/$$f; done
	$(MAKE) -C $(KDIR) M=$(BUILD) CONFIG_DM_REPLICATION=m C=2 \
		CHECK=sparse modules

# Forget one kernel's objects, so that the next build shows every warning.
clean-kver:
	rm -f $(BUILD)/*.o $(BUILD)/.*.cmd $(BUILD)/*.ko $(BUILD)/*.mod*

clean:
	rm -rf $(REPO)/build $(REPO)/dm-replication.ko $(REPLCTL)
