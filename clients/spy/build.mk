SPY_SRC := clients/spy/spy.c clients/spy/trace.c $(CLIENTS_COMMON)
BINS += $(BUILD)/bin/lc-spy
$(BUILD)/bin/lc-spy: $(SPY_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/lib/liblc.a
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) -lpthread
