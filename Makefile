# lc: build everything into $(BUILD)/. See lc.mk for the settings.
include lc.mk

PKGS := libzmq jansson yaml-0.1
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# V=1 shows every command.
ifeq ($(V),1)
Q :=
else
Q := @
endif

WARN := -Wall -Wextra -Werror -Wmissing-declarations -Wshadow
CFLAGS_ALL := -std=gnu11 $(OPT) $(WARN) -MMD -MP -D_GNU_SOURCE -Ilibclient -Iconfig $(PKG_CFLAGS) $(CFLAGS)
LDFLAGS_ALL := $(LDFLAGS)
ifeq ($(SANITIZE),1)
CFLAGS_ALL += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS_ALL += -fsanitize=address,undefined
endif

SOVERSION := 0
VERSION := $(shell sed -n 's/^\#define LC_VERSION "\(.*\)"/\1/p' libclient/lc.h)
LIB_SRC := libclient/client.c libclient/call.c libclient/queue.c libclient/lifecycle.c \
           libclient/module.c \
           libclient/thread.c libclient/timer.c \
           libclient/wire.c libclient/idmap.c libclient/heap.c libclient/ledger.c config/cfg.c
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)

BROKER_SRC := broker/main.c broker/broker.c broker/registry.c broker/calls.c broker/delivery.c \
              broker/queue.c broker/lifecycle.c broker/tap.c broker/access.c broker/ledger.c
CLIENTS_COMMON := clients/common.c
# lc-web and lc-prometheus serve HTTP through clients/httpd.c (libmicrohttpd, crypt(3)).
HTTPD_SRC := clients/httpd.c
HTTPD_LIBS := $(shell pkg-config --libs libmicrohttpd libcrypt 2>/dev/null || echo -lmicrohttpd -lcrypt)
LC_SRC := clients/lc/lc.c $(CLIENTS_COMMON)
ECHO_SRC := clients/echo/echo.c $(CLIENTS_COMMON)
LAUNCH_SRC := clients/launch/launch.c clients/launch/system.c $(CLIENTS_COMMON)

BINS := $(BUILD)/bin/lc-broker $(BUILD)/bin/lc $(BUILD)/bin/lc-echo $(BUILD)/bin/lc-launch
LIBS := $(BUILD)/lib/liblc.so.$(SOVERSION) $(BUILD)/lib/liblc.so $(BUILD)/lib/liblc.a \
        $(BUILD)/include/lc.h

# Each further program brings its own fragment (clients/NAME/build.mk, bench/build.mk)
# adding to BINS and giving its link rule; it is read here, before `all` needs BINS.
include $(sort $(wildcard clients/*/build.mk bench/build.mk)) tests/fuzz/build.mk tests/soak/build.mk tests/chaos/build.mk

# All test files link into one Criterion binary: one run, one summary line.
TEST_SRC := $(wildcard tests/test_*.c) tests/harness.c
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(BUILD)/tests/lc-tests

MAN1 := $(wildcard docs/man/*.1)
# lc-web's pages, installed where it looks for them: <prefix>/share/lc/web.
WEB_STATIC := $(wildcard clients/web/static/*)

.PHONY: all deps test test-browser check check-asan run install uninstall clean format tests

all: $(LIBS) $(BINS)

deps:
	@scripts/deps.sh

# `make test` sets everything up on a fresh Debian 12 and runs the whole suite.
test: deps
	@$(MAKE) --no-print-directory all tests
	@scripts/run-tests.sh $(BUILD)
	@$(MAKE) --no-print-directory test-browser

# lc-web's pages in Debian's headless chromium (playwright-core) against the demo system.
test-browser: all
	@scripts/browser-deps.sh
	@scripts/browser-test.sh $(BUILD)

# Same suite under AddressSanitizer and UndefinedBehaviorSanitizer.
check-asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan SANITIZE=1 all tests
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	    LSAN_OPTIONS=suppressions=$(abspath tests/lsan.supp):print_suppressions=0 \
	    scripts/run-tests.sh build-asan

check: test check-asan

tests: $(TEST_BIN)

run: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh $(BUILD)

$(BUILD)/obj/config/%.o: config/%.c
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_ALL) -fPIC -fvisibility=hidden -c $< -o $@

$(BUILD)/obj/libclient/%.o: libclient/%.c
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_ALL) -fPIC -fvisibility=hidden -c $< -o $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/lib/liblc.so.$(SOVERSION): $(LIB_OBJ)
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) -shared -Wl,-soname,liblc.so.$(SOVERSION) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) -lpthread

$(BUILD)/lib/liblc.so: $(BUILD)/lib/liblc.so.$(SOVERSION)
	$(Q)ln -sf liblc.so.$(SOVERSION) $@

$(BUILD)/lib/liblc.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	@echo "  AR      $@"
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/include/lc.h: libclient/lc.h
	@mkdir -p $(@D)
	$(Q)cp $< $@

# Programs link the static library: they run from the build tree without an rpath.
$(BUILD)/bin/lc-broker: $(BROKER_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/lib/liblc.a
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) -lpthread

$(BUILD)/bin/lc: $(LC_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/lib/liblc.a
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) -lpthread

$(BUILD)/bin/lc-launch: $(LAUNCH_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/lib/liblc.a
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) -lpthread

$(BUILD)/bin/lc-echo: $(ECHO_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/lib/liblc.a
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) -lpthread

$(TEST_BIN): $(TEST_OBJ) $(BUILD)/lib/liblc.a $(BINS)
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $(TEST_OBJ) $(BUILD)/lib/liblc.a $(PKG_LIBS) \
	    $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl) -lcriterion -lpthread

$(BUILD)/obj/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_ALL) -Itests -Ibroker -DLC_BUILD_DIR='"$(abspath $(BUILD))"' \
	    -DLC_SOURCE_DIR='"$(abspath .)"' -DLC_SANITIZE=$(SANITIZE) -c $< -o $@

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	    $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 755 $(BUILD)/lib/liblc.so.$(SOVERSION) $(DESTDIR)$(PREFIX)/lib/
	ln -sf liblc.so.$(SOVERSION) $(DESTDIR)$(PREFIX)/lib/liblc.so
	install -m 644 $(BUILD)/lib/liblc.a $(DESTDIR)$(PREFIX)/lib/
	install -m 644 libclient/lc.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' libclient/lc.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/lc.pc
	$(if $(MAN1),install -m 644 $(MAN1) $(DESTDIR)$(PREFIX)/share/man/man1/)
	install -d $(DESTDIR)$(PREFIX)/share/lc/web
	install -m 644 $(WEB_STATIC) $(DESTDIR)$(PREFIX)/share/lc/web/

uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/bin/,$(notdir $(BINS)))
	rm -f $(DESTDIR)$(PREFIX)/lib/liblc.so* $(DESTDIR)$(PREFIX)/lib/liblc.a
	rm -f $(DESTDIR)$(PREFIX)/include/lc.h $(DESTDIR)$(PREFIX)/lib/pkgconfig/lc.pc
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/share/man/man1/,$(notdir $(MAN1)))
	rm -rf $(DESTDIR)$(PREFIX)/share/lc/web

format:
	clang-format -i $(wildcard */*.c */*.h clients/*/*.c)

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
