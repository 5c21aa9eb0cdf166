# lc-bench: `make bench` measures every path of the bus beside same-run baselines
# (docs/performance.md). BENCH_ARGS passes options, e.g. `make bench BENCH_ARGS=--quick`.
BENCH_SRC := bench/main.c bench/util.c bench/baseline.c bench/scenarios.c bench/system.c
BENCH_ARGS ?=
BINS += $(BUILD)/bin/lc-bench

$(BUILD)/bin/lc-bench: $(BENCH_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/lib/liblc.a
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) -lpthread

.PHONY: bench bench-quick
# Installs what is missing, builds everything (lc-spy too when it is part of the tree),
# then runs the benchmark.
bench: deps
	@$(MAKE) --no-print-directory all
	@$(BUILD)/bin/lc-bench $(BENCH_ARGS)

bench-quick: deps
	@$(MAKE) --no-print-directory all
	@$(BUILD)/bin/lc-bench --quick $(BENCH_ARGS)

# The same workloads through mosquitto and a private dbus-daemon. Only this target needs
# libmosquitto and libsystemd; scripts/bench-peers-deps.sh installs them when missing.
.PHONY: bench-peers
$(BUILD)/bin/lc-bench-peers: $(BUILD)/obj/bench/peers.o
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ -lmosquitto -lsystemd

bench-peers: deps
	@scripts/bench-peers-deps.sh
	@$(MAKE) --no-print-directory all $(BUILD)/bin/lc-bench-peers
	@$(BUILD)/bin/lc-bench --peers --only '^(call_depth1|call_depth16|events|peers)$$' $(BENCH_ARGS)
