# lc-chaos: kill -9 under load (tests/chaos/chaos.c, docs/reliability.md). Built with the
# tests, not installed. `make chaos` runs 1,000 kills (CHAOS_KILLS=N for another number,
# CHAOS_ARGS for more options); the suite runs a short version (suite `chaos`).
CHAOS_BIN := $(BUILD)/tests/lc-chaos
CHAOS_KILLS ?= 1000
CHAOS_ARGS ?=

$(CHAOS_BIN): $(BUILD)/obj/tests/chaos/chaos.o $(BUILD)/lib/liblc.a
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) -lpthread

tests: $(CHAOS_BIN)

.PHONY: chaos
chaos: deps
	@$(MAKE) --no-print-directory all $(CHAOS_BIN)
	@$(CHAOS_BIN) --kills $(CHAOS_KILLS) $(CHAOS_ARGS)
