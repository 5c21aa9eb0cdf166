# Fuzzing harnesses (tests/fuzz/, docs/reliability.md).
# - The test suite builds fuzz-replay-NAME with the usual compiler and runs it over the
#   checked-in corpus tests/fuzz/corpus/NAME (suite `fuzz`).
# - `make fuzz FUZZ_SECONDS=N` builds the libFuzzer binaries with clang, ASan and UBSan in
#   build-fuzz/ and runs each harness for N seconds (scripts/fuzz.sh).
FUZZ_NAMES := broker client yaml args
.SECONDEXPANSION:
FUZZ_CFLAGS := -Itests/fuzz -Ibroker -Iclients -Iclients/launch
FUZZ_BROKER_OBJ := $(filter-out $(BUILD)/obj/broker/main.o,$(BROKER_SRC:%.c=$(BUILD)/obj/%.o))
FUZZ_OBJ_broker := $(BUILD)/obj/tests/fuzz/fuzz_broker.o $(FUZZ_BROKER_OBJ)
FUZZ_OBJ_client := $(BUILD)/obj/tests/fuzz/fuzz_client.o
FUZZ_OBJ_yaml := $(BUILD)/obj/tests/fuzz/fuzz_yaml.o $(BUILD)/obj/clients/launch/system.o
FUZZ_OBJ_args := $(BUILD)/obj/tests/fuzz/fuzz_args.o $(BUILD)/obj/clients/common.o
FUZZ_REPLAY := $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz-replay-%)
# Kept between builds (make would otherwise delete them as intermediate files).
.PRECIOUS: $(BUILD)/obj/tests/fuzz/%.o

$(BUILD)/obj/tests/fuzz/%.o: tests/fuzz/%.c
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_ALL) $(FUZZ_CFLAGS) -c $< -o $@

$(BUILD)/tests/fuzz-replay-%: $(BUILD)/obj/tests/fuzz/replay.o $$(FUZZ_OBJ_$$*) $(BUILD)/lib/liblc.a
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) -lpthread

# Built only by `make fuzz` (clang, -fsanitize=fuzzer).
$(BUILD)/fuzz/fuzz-%: $$(FUZZ_OBJ_$$*) $(BUILD)/lib/liblc.a
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -lpthread

.PHONY: fuzz fuzz-bins
fuzz-bins: $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz-%)

FUZZ_SECONDS ?= 60
fuzz: deps
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang SANITIZE=1 \
	    CFLAGS=-fsanitize=fuzzer-no-link fuzz-bins
	@scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_NAMES)
	@$(MAKE) --no-print-directory all tests
	@echo "fuzz: live for $(FUZZ_SECONDS)s: random and mutated messages to a running broker"
	@status=0; LC_LIVE_FUZZ_SECONDS=$(FUZZ_SECONDS) $(BUILD)/tests/lc-tests --verbose \
	    --filter 'fuzz/live_fuzz*' >build-fuzz/live.log 2>&1 || status=$$?; \
	    grep -E 'lc-fuzz-live|calls and|PASS|FAIL|Assert' build-fuzz/live.log; exit $$status

# The live fuzz: lc-fuzz-live sends random and mutated messages to a running broker.
$(BUILD)/tests/lc-fuzz-live: $(BUILD)/obj/tests/fuzz/live.o $(BUILD)/lib/liblc.a
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) -lpthread

# The suite replays the corpora and runs a short live fuzz (tests/test_fuzz.c).
tests: $(FUZZ_REPLAY) $(BUILD)/tests/lc-fuzz-live
