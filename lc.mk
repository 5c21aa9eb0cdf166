# Build settings for lc. Every value here can be overridden on the command line,
# e.g. `make PREFIX=/opt/lc` or `make SANITIZE=1 BUILD=build-asan`.

# Where `make install` puts things.
PREFIX ?= /usr/local
DESTDIR ?=

# Output folder for objects, binaries and libraries.
BUILD ?= build

# SANITIZE=1 builds with AddressSanitizer and UndefinedBehaviorSanitizer.
SANITIZE ?= 0

# Optimisation and debug information.
OPT ?= -O2 -g

CC ?= cc
