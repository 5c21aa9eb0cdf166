# lc-prometheus: the bus's metrics for Prometheus (GET /metrics over clients/httpd.c).
PROMETHEUS_SRC := clients/prometheus/prometheus.c clients/prometheus/gauges.c \
                  clients/prometheus/expo.c $(HTTPD_SRC) $(CLIENTS_COMMON)
BINS += $(BUILD)/bin/lc-prometheus
$(BUILD)/bin/lc-prometheus: $(PROMETHEUS_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/lib/liblc.a
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) $(HTTPD_LIBS) -lm -lpthread
