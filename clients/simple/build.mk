# lc-simple: the simple example, the file a new module starts from.
SIMPLE_SRC := clients/simple/simple.c
BINS += $(BUILD)/bin/lc-simple
$(BUILD)/bin/lc-simple: $(SIMPLE_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/lib/liblc.a
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) -lpthread
