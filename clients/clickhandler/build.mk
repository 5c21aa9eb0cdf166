# lc-clickhandler: clicks from GPIO edges.
CLICKHANDLER_SRC := clients/clickhandler/clickhandler.c $(CLIENTS_COMMON)
BINS += $(BUILD)/bin/lc-clickhandler
$(BUILD)/bin/lc-clickhandler: $(CLICKHANDLER_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/lib/liblc.a
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) -lpthread
