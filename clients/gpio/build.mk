# lc-gpio: GPIO lines as a module (libgpiod 1.6, or a simulated chip).
GPIO_SRC := clients/gpio/gpio.c clients/gpio/sim.c clients/gpio/gpiod.c $(CLIENTS_COMMON)
GPIO_LIBS := $(shell pkg-config --libs libgpiod 2>/dev/null || echo -lgpiod)
BINS += $(BUILD)/bin/lc-gpio
$(BUILD)/bin/lc-gpio: $(GPIO_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/lib/liblc.a
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) $(GPIO_LIBS) -lpthread
