# SPDX-License-Identifier: MIT
#
# surge: out-of-tree build into $(BUILD)/. Every library through pkg-config.
# `make` installs missing Debian packages first (deploy/install-deps.sh).

BUILD   ?= build
CC      ?= gcc
OPT     ?= -O2
SAN     ?=
V       ?= 0

ifeq ($(V),0)
Q := @
else
Q :=
endif

ifneq ($(SAN),)
OPT      := -O1
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

PKGS := libdpdk liburing libprotobuf-c cmocka yaml-0.1 libcrypto libmicrohttpd

# Expanded only inside recipes, i.e. after the dependencies are installed.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS))

WARN    := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
           -Wmissing-prototypes -Wformat=2 -Wno-address-of-packed-member
CFLAGS  += -std=c11 -D_GNU_SOURCE -g $(OPT) $(WARN) $(SANFLAGS) -MMD -MP \
           -I$(BUILD)/gen -Irouter/net -Irouter/wire -Irouter/dispatch \
           -Irouter/store -Irouter/ctl -Ibench
LDFLAGS += $(SANFLAGS)
LDLIBS  += -lm -lpthread

DEPS_STAMP := $(BUILD)/.deps-installed
GEN_C      := $(BUILD)/gen/surge.pb-c.c
GEN_H      := $(BUILD)/gen/surge.pb-c.h

NET_SRC   := $(wildcard router/net/*.c)
WIRE_SRC  := $(wildcard router/wire/*.c)
DISP_SRC  := $(wildcard router/dispatch/*.c)
STORE_SRC := $(wildcard router/store/*.c)
CTL_SRC   := $(filter-out router/ctl/main.c,$(wildcard router/ctl/*.c))
BENCH_LIB_SRC := $(filter-out bench/surge_bench.c bench/bench_%.c,$(wildcard bench/*.c))

LIB_SRC := $(NET_SRC) $(WIRE_SRC) $(DISP_SRC) $(STORE_SRC) $(CTL_SRC) $(BENCH_LIB_SRC)
LIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC)) $(BUILD)/obj/gen/surge.pb-c.o
LIB     := $(BUILD)/libsurge.a

ROUTER  := $(BUILD)/surge-router
BENCH   := $(BUILD)/surge-bench
MICRO_SRC := $(wildcard bench/bench_*.c)
MICRO   := $(patsubst bench/%.c,$(BUILD)/%,$(MICRO_SRC))

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT     := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
ITEST_SRC := $(wildcard tests/integration/*.c)
ITEST    := $(patsubst tests/integration/%.c,$(BUILD)/tests/%,$(ITEST_SRC))
CRASH_SRC := $(wildcard tests/crash/*.c)
CRASH    := $(patsubst tests/crash/%.c,$(BUILD)/tests/%,$(CRASH_SRC))
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ     := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
# The same fuzz targets as plain programs that replay the corpus (run by make test).
FUZZ_REPLAY := $(patsubst tests/fuzz/%.c,$(BUILD)/tests/replay_%,$(FUZZ_SRC))

.PHONY: all deps test unit demo bench asan fuzz fmt fmt-check lint clean help
.DEFAULT_GOAL := all

all: $(ROUTER) $(BENCH) $(UNIT) $(ITEST) $(CRASH) $(FUZZ_REPLAY) $(MICRO)

help:
	@echo "targets: all test demo bench asan fuzz fmt fmt-check lint clean"

deps: $(DEPS_STAMP)

$(DEPS_STAMP): deploy/install-deps.sh
	$(Q)mkdir -p $(@D)
	$(Q)./deploy/install-deps.sh
	$(Q)touch $@

# ---- generated protobuf-c code (never committed) -----------------------------
$(GEN_H): $(GEN_C)
$(GEN_C): proto/surge.proto $(DEPS_STAMP)
	@echo "  PROTOC  $<"
	$(Q)mkdir -p $(BUILD)/gen
	$(Q)protoc-c --proto_path=proto --c_out=$(BUILD)/gen $<

$(BUILD)/obj/gen/surge.pb-c.o: $(GEN_C)
	@echo "  CC      $<"
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(filter-out -Wmissing-prototypes -Wshadow,$(CFLAGS)) $(PKG_CFLAGS) -c $< -o $@

# ---- objects ----------------------------------------------------------------
$(BUILD)/obj/%.o: %.c $(GEN_H) $(DEPS_STAMP)
	@echo "  CC      $<"
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(ROUTER): $(BUILD)/obj/router/ctl/main.o $(LIB)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(PKG_LIBS) $(LDLIBS)

$(BENCH): $(BUILD)/obj/bench/surge_bench.o $(LIB)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(PKG_LIBS) $(LDLIBS)

$(BUILD)/bench_%: $(BUILD)/obj/bench/bench_%.o $(LIB)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(PKG_LIBS) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB)
	@echo "  LD      $@"
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(PKG_LIBS) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/integration/%.o $(LIB)
	@echo "  LD      $@"
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(PKG_LIBS) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/crash/%.o $(LIB)
	@echo "  LD      $@"
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(PKG_LIBS) $(LDLIBS)

$(BUILD)/obj/tests/replay_%.o: tests/fuzz/%.c $(GEN_H) $(DEPS_STAMP)
	@echo "  CC      $< (replay)"
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) -DFUZZ_REPLAY_MAIN -c $< -o $@

$(BUILD)/tests/replay_%: $(BUILD)/obj/tests/replay_%.o $(LIB)
	@echo "  LD      $@"
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(PKG_LIBS) $(LDLIBS)

# libFuzzer builds with clang (make fuzz; runs each target for FUZZ_SECONDS).
FUZZ_SECONDS ?= 30
$(BUILD)/fuzz/%: tests/fuzz/%.c $(LIB_SRC) $(GEN_C) $(DEPS_STAMP)
	@echo "  FUZZ    $@"
	$(Q)mkdir -p $(@D)
	$(Q)clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
		-I$(BUILD)/gen -Irouter/net -Irouter/wire -Irouter/dispatch -Irouter/store \
		-Irouter/ctl -Ibench $(PKG_CFLAGS) $< $(LIB_SRC) $(GEN_C) -o $@ $(PKG_LIBS) $(LDLIBS)

fuzz: $(FUZZ)
	$(Q)for f in $(FUZZ); do \
		n=$$(basename $$f); mkdir -p $(BUILD)/corpus/$$n; \
		echo "fuzzing $$n for $(FUZZ_SECONDS)s"; \
		$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $(BUILD)/corpus/$$n tests/fuzz/corpus/$$n || exit 1; \
	done

# ---- running ----------------------------------------------------------------
test: all
	$(Q)BUILD=$(BUILD) ./tests/run.sh

unit: all
	$(Q)BUILD=$(BUILD) ./tests/run.sh unit

demo: all
	$(Q)BUILD=$(BUILD) ./deploy/demo.sh

bench: all
	$(Q)BUILD=$(BUILD) ./bench/run.sh

asan:
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan SAN=1 test

# ---- hygiene ----------------------------------------------------------------
FMT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

fmt:
	$(Q)clang-format -i $(FMT_FILES)

fmt-check:
	$(Q)clang-format --dry-run -Werror $(FMT_FILES)

lint: $(GEN_H)
	$(Q)cppcheck --quiet --error-exitcode=1 --std=c11 --inline-suppr \
		--suppress=missingIncludeSystem --suppress=unusedFunction \
		--suppress=unmatchedSuppression \
		-Irouter/net -Irouter/wire -Irouter/dispatch -Irouter/store -Irouter/ctl -Ibench \
		router bench
	$(Q)clang-tidy --quiet $(filter %.c,$(LIB_SRC)) router/ctl/main.c -- \
		-std=c11 -D_GNU_SOURCE $(PKG_CFLAGS) -I$(BUILD)/gen -Irouter/net -Irouter/wire \
		-Irouter/dispatch -Irouter/store -Irouter/ctl -Ibench

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
.SECONDARY:
