# lc-soak: `make soak` runs 1,000,000 calls and 1,000,000 events through one broker and a
# few lc-echo modules, sampling every process's RSS and open descriptors, and fails when
# one grows after warm-up (docs/reliability.md). SOAK_ARGS passes options, e.g.
# `make soak SOAK_ARGS="--calls 100000 --events 100000 --csv soak.csv"`.
# `make soak-leaks` runs a shorter soak with every process under valgrind memcheck.
# The suite runs a short soak too (tests/test_soak.c, suite `soak`).
SOAK_BIN := $(BUILD)/tests/lc-soak
SOAK_ARGS ?=
SOAK_LEAKS_ARGS ?= --calls 20000 --events 20000 --rate 0

$(SOAK_BIN): $(BUILD)/obj/tests/soak/soak.o $(BUILD)/lib/liblc.a
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) -lpthread

tests: $(SOAK_BIN)

.PHONY: soak soak-leaks
soak: deps
	@$(MAKE) --no-print-directory all $(SOAK_BIN) $(SOAK_HEAP)
	@$(SOAK_BIN) $(SOAK_ARGS)

soak-leaks: deps
	@command -v valgrind >/dev/null || { echo "soak-leaks needs valgrind: apt-get install valgrind" >&2; exit 2; }
	@$(MAKE) --no-print-directory all $(SOAK_BIN) $(SOAK_HEAP)
	@$(SOAK_BIN) --valgrind $(SOAK_LEAKS_ARGS) $(SOAK_ARGS)

# lc-soak-heap.so, preloaded into every process of the soak: counts the bytes each holds
# through malloc (tests/soak/heapstat.c). Built without the sanitizers, which replace
# malloc themselves (lc-soak does not preload it then).
SOAK_HEAP := $(BUILD)/tests/lc-soak-heap.so
$(SOAK_HEAP): tests/soak/heapstat.c tests/soak/heapstat.h
	@mkdir -p $(@D)
	@echo "  CC      $@"
	$(Q)$(CC) -std=gnu11 -O2 $(WARN) -D_GNU_SOURCE -fPIC -shared -fvisibility=hidden \
	    -o $@ $< -lpthread

tests: $(SOAK_HEAP)
