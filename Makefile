# kinema — plain GNU Make build. See docs/design.md ("Build") for why Make and not CMake.
#
#   make              build/kinema and build/kinema-tests (optimised, -march=native)
#   make test         build, then run the test suite
#   make check        the full suite as CI runs it (tests, sanitizer tests, fuzzing smoke run)
#   make SAN=1 test   the same in build-san/ with AddressSanitizer + UBSan
#   make NATIVE=0     portable x86-64 build (no -march=native)
#   make bench        build/kinema bench ops
#   make fuzz         libFuzzer targets in build-fuzz/ (clang)

SAN    ?= 0
NATIVE ?= 1
CC     ?= cc

ifeq ($(SAN),1)
BUILD  ?= build-san
OPT    := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all \
          -Wno-format-truncation # -O1 sees fewer value ranges and warns on sizes -O2 proves safe
LDSAN  := -fsanitize=address,undefined
else
BUILD  ?= build
OPT    := -O2 -g
LDSAN  :=
endif

ARCH := $(if $(filter 1,$(NATIVE)),-march=native,-mavx2 -mfma -mf16c)

PKGS    := libcjson libpng libjpeg libwebp libwebpmux libavformat libavcodec libavutil libswscale zlib ompi-c
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS  := -std=gnu11 $(OPT) $(ARCH) -ffp-contract=fast -Wall -Wextra -Werror \
           -Wno-missing-field-initializers -Iinclude -Isrc $(PKG_CFLAGS) -MMD -MP
LDLIBS  := $(PKG_LIBS) -lgif -lopenblas -lm -lpthread

LIB_SRC  := $(sort $(wildcard src/core/*.c src/ops/*.c src/nn/*.c src/models/*.c \
                             src/diffusion/*.c src/train/*.c src/io/*.c))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/*.c))
BENCH_SRC:= $(sort $(wildcard bench/*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o) $(BENCH_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)

all: $(BUILD)/kinema $(BUILD)/kinema-tests

$(BUILD)/kinema: $(LIB_OBJ) $(CLI_OBJ)
	$(CC) $(LDSAN) -o $@ $^ $(LDLIBS)

$(BUILD)/kinema-tests: $(LIB_OBJ) $(TEST_OBJ)
	$(CC) $(LDSAN) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

test: all
	./scripts/test $(BUILD)

# the full suite as CI runs it: tests, the same under ASan+UBSan, and a fuzzing smoke run
check:
	./scripts/check

bench: $(BUILD)/kinema
	$(BUILD)/kinema bench ops

fuzz:
	./scripts/fuzz build

clean:
	rm -rf build build-san build-fuzz

.PHONY: all test check bench fuzz clean
-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
