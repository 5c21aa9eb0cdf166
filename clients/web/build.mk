# lc-web: the dashboard and HTTP API (libmicrohttpd through clients/httpd.c); it reads the
# broker's monitor with lc-spy's record decoder (clients/spy/trace.c).
WEB_SRC := clients/web/web.c clients/web/hub.c clients/web/tap.c clients/spy/trace.c \
           $(HTTPD_SRC) $(CLIENTS_COMMON)
BINS += $(BUILD)/bin/lc-web
# Without an installed copy beside the program, the pages are served from the source tree.
$(BUILD)/obj/clients/web/web.o: CFLAGS_ALL += -DLC_WEB_SOURCE_STATIC='"$(abspath clients/web/static)"'
$(BUILD)/bin/lc-web: $(WEB_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/lib/liblc.a
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) $(HTTPD_LIBS) -lpthread

# The pages are installed beside the programs: <prefix>/share/lc/web.
.PHONY: install-web uninstall-web
install: install-web
uninstall: uninstall-web
install-web:
	install -d $(DESTDIR)$(PREFIX)/share/lc/web
	$(if $(wildcard clients/web/static/*),install -m 644 $(wildcard clients/web/static/*) $(DESTDIR)$(PREFIX)/share/lc/web/)
uninstall-web:
	rm -rf $(DESTDIR)$(PREFIX)/share/lc/web
