# lc-controller: the controller example (the demo's outputs from its inputs).
CONTROLLER_SRC := clients/controller/controller.c $(CLIENTS_COMMON)
BINS += $(BUILD)/bin/lc-controller
$(BUILD)/bin/lc-controller: $(CONTROLLER_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/lib/liblc.a
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) -lpthread
