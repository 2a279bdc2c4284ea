# Makefile -- build, test, check and install tether (GNU make).
#
#   make                build build/tether/core.so, build/libtether.a, build/tether.pc
#   make test           install missing Debian packages, build, run the specs
#   make demo           install missing Debian packages, build, run examples/demo.sh
#   make check          specs under ASan+UBSan and under valgrind, plus luacheck and
#                       the memory-exhaustion sweep (make oom)
#   make tsan           the worker-thread specs under ThreadSanitizer (also in make check)
#   make install        PREFIX=/usr/local, DESTDIR= for staged installs
#   make help           every target
#
# Every variable set with ?= can be overridden on the command line or from the
# environment.  The names (CFLAGS, LIBFLAG, LIBDIR, LUADIR, PREFIX) are the ones
# LuaRocks passes to a `make` build.

# ---- tools ----------------------------------------------------------------------------

LUA          ?= lua5.4
LUA_PC       ?= lua5.4
LUA_VERSION  ?= 5.4
PKG_CONFIG   ?= pkg-config
BUSTED       ?= busted
LUACHECK     ?= luacheck
LUAROCKS     ?= luarocks
VALGRIND     ?= valgrind
CLANG_FORMAT ?= clang-format

# ---- install locations ----------------------------------------------------------------
# LIBDIR/LUADIR are on lua5.4's default package.cpath/package.path for PREFIX=/usr/local.

PREFIX       ?= /usr/local
DESTDIR      ?=
LIBDIR       ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
LUADIR       ?= $(PREFIX)/share/lua/$(LUA_VERSION)
INCLUDEDIR   ?= $(PREFIX)/include
STATICLIBDIR ?= $(PREFIX)/lib
PKGCONFIGDIR ?= $(PREFIX)/lib/pkgconfig

# ---- flags ----------------------------------------------------------------------------

CFLAGS       ?= -O2 -g
CPPFLAGS     ?=
LDFLAGS      ?=
LIBFLAG      ?= -shared
# WERROR=1 adds -Werror.
WERROR       ?=
BUILDDIR     ?= build

# The Lua headers come in with -isystem (keeps clang-tidy and -Wpedantic quiet about
# luaconf.h).  The module is never linked with -llua5.4: the lua5.4 executable exports
# the Lua API itself.  pkg-config runs at most once per make, and only when a recipe
# needs the value (so `make deps` works before pkg-config is installed).
ifeq ($(origin LUA_CFLAGS),undefined)
LUA_CFLAGS = $(eval LUA_CFLAGS := $(patsubst -I%,-isystem %,$(shell $(PKG_CONFIG) --cflags $(LUA_PC))))$(LUA_CFLAGS)
endif
ifeq ($(origin UV_CFLAGS),undefined)
UV_CFLAGS = $(eval UV_CFLAGS := $(shell $(PKG_CONFIG) --cflags libuv))$(UV_CFLAGS)
endif
ifeq ($(origin UV_LIBS),undefined)
UV_LIBS = $(eval UV_LIBS := $(shell $(PKG_CONFIG) --libs libuv))$(UV_LIBS)
endif

# Version for tether.pc: TETHER_VERSION_MAJOR/MINOR/PATCH from csrc/tether.h, else "scm".
ifeq ($(origin VERSION),undefined)
VERSION = $(eval VERSION := $(or $(shell awk 'NF >= 2 && $$(NF-1) ~ /^TETHER_VERSION_(MAJOR|MINOR|PATCH)$$/ && $$NF ~ /^[0-9]+$$/ { v[$$(NF-1)] = $$NF; n++ } END { if (n == 3) printf "%s.%s.%s", v["TETHER_VERSION_MAJOR"], v["TETHER_VERSION_MINOR"], v["TETHER_VERSION_PATCH"] }' csrc/tether.h 2>/dev/null),scm))$(VERSION)
endif

WARNFLAGS     = -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
TETHER_CFLAGS = -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC -fvisibility=hidden $(WARNFLAGS) \
                $(if $(filter-out 0 no,$(WERROR)),-Werror)
ALL_CFLAGS    = $(TETHER_CFLAGS) $(CPPFLAGS) -Icsrc $(LUA_CFLAGS) $(UV_CFLAGS) $(CFLAGS)

# Sanitizer variant (make check).  gcc only: the runtime is preloaded from gcc's libasan.
# TETHER_DEBUG checks the scheduler's invariants (csrc/invariants.c) at every tick.
ASAN_BUILDDIR ?= build-asan
ASAN_CFLAGS   ?= -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
                 -fno-sanitize-recover=undefined -DTETHER_DEBUG
ASAN_LDFLAGS  ?= -fsanitize=address,undefined -Wl,-z,nodelete
ifeq ($(origin ASAN_RUNTIME),undefined)
ASAN_RUNTIME = $(eval ASAN_RUNTIME := $(shell $(CC) -print-file-name=libasan.so))$(ASAN_RUNTIME)
endif
ASAN_OPTIONS  ?= detect_leaks=1:abort_on_error=1
UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
LSAN_OPTIONS  ?= $(if $(wildcard spec/lsan.supp),suppressions=$(CURDIR)/spec/lsan.supp:)print_suppressions=0

# The helper stretches its watchdogs by these factors on the slow runs.
ASAN_TIME_SCALE     ?= 3
VALGRIND_TIME_SCALE ?= 6

VALGRIND_FLAGS ?= -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
                  --error-exitcode=99 --keep-debuginfo=yes --child-silent-after-fork=yes \
                  $(if $(wildcard spec/valgrind.supp),--suppressions=spec/valgrind.supp)

# ---- what gets built ------------------------------------------------------------------

SRCS      := $(sort $(wildcard csrc/*.c))
OBJS      := $(patsubst csrc/%.c,$(BUILDDIR)/obj/%.o,$(SRCS))
LUA_SRCS  := $(sort $(wildcard lua/tether/*.lua))
MODULE    := $(BUILDDIR)/tether/core.so
STATICLIB := $(BUILDDIR)/libtether.a
PCFILE    := $(BUILDDIR)/tether.pc
FLAGS_STAMP := $(BUILDDIR)/.build-flags

# ---- tests ----------------------------------------------------------------------------
# The specs run in this process (--ignore-lua: never let busted re-exec itself, which
# would hide the tests from valgrind).  --lpath/--cpath on the command line replace
# the ones in .busted, so each build variant loads its own core.so.

TEST_TIMEOUT ?= 900
BUSTED_ARGS  ?=
LUA_TEST_PATH = ./lua/?.lua;./lua/?/init.lua
dirpath = $(if $(filter /%,$(1)),$(1),./$(1))
test_env = LUA_PATH_5_4="$(LUA_TEST_PATH);;" LUA_CPATH_5_4="$(call dirpath,$(1))/?.so;;" TETHER_LUA="$(LUA)"
busted_cmd = $(LUA) "$$(command -v $(BUSTED))" --ignore-lua --lpath='$(LUA_TEST_PATH)' --cpath='$(call dirpath,$(1))/?.so' -o spec/support/summary.lua $(BUSTED_ARGS)
# Runs a command under `timeout`, and says so when the time ran out.
timed = timeout $(TEST_TIMEOUT) $(1) || { rc=$$?; if [ $$rc -eq 124 ]; then echo "make: $(2) timed out after $(TEST_TIMEOUT) s" >&2; fi; exit $$rc; }

# ---- system packages (Debian) ---------------------------------------------------------

# curl, redis-tools and socat are the clients spec/examples_spec.lua drives the examples with.
DEPS_PKGS ?= gcc libc6-dev pkg-config lua5.4 liblua5.4-dev libuv1-dev lua-busted lua-check lua-luv-dev \
             luarocks curl redis-tools socat
ifneq ($(filter check valgrind,$(MAKECMDGOALS)),)
DEPS_PKGS += valgrind
endif

LUACHECK_DIRS = $(wildcard lua spec examples bench)
FORMAT_SRCS   = $(wildcard csrc/*.c csrc/*.h examples/embed/*.c examples/embed/*.h) \
                spec/support/oom_host.c

.DEFAULT_GOAL := all
.PHONY: all module staticlib pc deps test check asan asan-test valgrind oom soak demo bench docs \
        luacheck lint format install uninstall rock rockspec-sources clean help FORCE tsan
.DELETE_ON_ERROR:

all: module staticlib pc

module: $(MODULE)
staticlib: $(STATICLIB)
pc: $(PCFILE)

# Objects are rebuilt when the compiler or any flag changes (the stamp's contents).
$(FLAGS_STAMP): FORCE
	@mkdir -p $(@D)
	@$(if $(filter file,$(origin LUA_CFLAGS)),$(PKG_CONFIG) --exists $(LUA_PC) libuv 2>/dev/null || \
	  echo "warning: $(PKG_CONFIG) cannot find $(LUA_PC) and libuv; run 'make deps'" \
	       "(or set LUA_CFLAGS and UV_CFLAGS and UV_LIBS)" >&2;) \
	flags='$(subst ','\'',$(CC) $(ALL_CFLAGS) | $(LIBFLAG) $(LDFLAGS) $(UV_LIBS))'; \
	if [ "$$flags" != "$$(cat $@ 2>/dev/null)" ]; then printf '%s\n' "$$flags" > $@; fi

$(BUILDDIR)/obj/%.o: csrc/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(MODULE): $(OBJS) $(FLAGS_STAMP)
	$(if $(SRCS),,$(error no C sources: csrc/*.c matches nothing))
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LIBFLAG) $(LDFLAGS) -o $@ $(OBJS) $(UV_LIBS)

# The static library for embedders also carries the Lua facade, compiled in
# (tether_openlibs registers it in package.preload).
FACADE_C := $(BUILDDIR)/gen/facade.c
FACADE_O := $(BUILDDIR)/obj/facade.o

$(FACADE_C): $(LUA_SRCS) tools/embed_lua.lua
	@mkdir -p $(@D)
	$(LUA) tools/embed_lua.lua $@ $(LUA_SRCS)

$(FACADE_O): $(FACADE_C) csrc/tether.h $(FLAGS_STAMP)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(STATICLIB): $(OBJS) $(FACADE_O)
	$(if $(SRCS),,$(error no C sources: csrc/*.c matches nothing))
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $(OBJS) $(FACADE_O)

# Regenerated on every make, rewritten only when PREFIX/VERSION/... changed.
$(PCFILE): tether.pc.in FORCE
	@mkdir -p $(@D)
	@sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(STATICLIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@LUA_PC@|$(LUA_PC)|g' tether.pc.in > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv -f $@.tmp $@; echo "wrote $@"; fi

-include $(OBJS:.o=.d)

# ---- deps: install what is missing (one dpkg-query call when nothing is) ---------------
# Not root: prints the apt-get command and fails.  SKIP_DEPS=1 skips the check.

deps:
	@if [ -n "$(SKIP_DEPS)" ]; then exit 0; fi; \
	if ! command -v dpkg-query >/dev/null 2>&1; then \
	  echo "make deps: no dpkg-query (not Debian?); make sure these are installed:" \
	       "$(DEPS_PKGS)" >&2; \
	  exit 0; \
	fi; \
	installed=" $$(dpkg-query -W -f='$${Package} $${Status}\n' $(DEPS_PKGS) 2>/dev/null | \
	               awk '$$NF == "installed" { printf "%s ", $$1 }')"; \
	missing=; \
	for p in $(DEPS_PKGS); do \
	  case "$$installed" in *" $$p "*) ;; *) missing="$$missing $$p" ;; esac; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" -eq 0 ]; then \
	  echo "make deps: installing$$missing"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	else \
	  echo "make deps: these Debian packages are missing:$$missing" >&2; \
	  echo "make deps: install them with this command, then run make again:" >&2; \
	  echo "" >&2; \
	  echo "    sudo apt-get install -y$$missing" >&2; \
	  echo "" >&2; \
	  exit 1; \
	fi

# ---- tests ----------------------------------------------------------------------------

test: deps
	@$(MAKE) --no-print-directory all
	@echo "== specs ($(BUILDDIR)/tether/core.so)"
	$(call test_env,$(BUILDDIR)) $(call timed,$(call busted_cmd,$(BUILDDIR)),make test)

# The ASan+UBSan build of the module only.
asan:
	@$(MAKE) --no-print-directory BUILDDIR=$(ASAN_BUILDDIR) CFLAGS='$(ASAN_CFLAGS)' \
	    LDFLAGS='$(ASAN_LDFLAGS)' module

# Specs under ASan+UBSan.  The sanitizer runtime must be preloaded into lua5.4; child
# lua5.4 processes started by specs inherit LD_PRELOAD and are checked too.
asan-test: asan
	@test -f "$(ASAN_RUNTIME)" || { echo "make: $(CC) has no libasan.so (need gcc)" >&2; exit 1; }
	@echo "== specs under ASan+UBSan ($(ASAN_BUILDDIR)/tether/core.so)"
	$(call test_env,$(ASAN_BUILDDIR)) TETHER_TEST_TIME_SCALE=$(ASAN_TIME_SCALE) \
	ASAN_OPTIONS='$(ASAN_OPTIONS)' \
	UBSAN_OPTIONS='$(UBSAN_OPTIONS)' LSAN_OPTIONS='$(LSAN_OPTIONS)' \
	$(call timed,env LD_PRELOAD="$(ASAN_RUNTIME)" $(call busted_cmd,$(ASAN_BUILDDIR)),ASan run)

# Specs under valgrind, against the normal build.
valgrind: module
	@echo "== specs under valgrind ($(BUILDDIR)/tether/core.so)"
	$(call test_env,$(BUILDDIR)) TETHER_TEST_TIME_SCALE=$(VALGRIND_TIME_SCALE) TETHER_TEST_VALGRIND=1 \
	$(call timed,$(VALGRIND) $(VALGRIND_FLAGS) $(call busted_cmd,$(BUILDDIR)),valgrind run)

# The memory-exhaustion sweep (spec/support/oom_host.c): every program of
# spec/support/oom_programs runs with allocation N failing, for every N (every
# OOM_STRIDE-th), in each of OOM_MODES, against the ASan+UBSan build with
# TETHER_DEBUG.  tether's own reports on stderr
# ("tether: ..." lines: a host callback that raised) are expected and left out.
OOM_MODES    ?= once,twice,burst,from
OOM_STRIDE   ?= 1
OOM_PROGRAMS ?= $(sort $(wildcard spec/support/oom_programs/*.lua))
OOM_HOST      = $(ASAN_BUILDDIR)/oom_host
OOM_WRAP      = -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free

$(OOM_HOST): spec/support/oom_host.c $(ASAN_BUILDDIR)/libtether.a
	$(CC) -std=c99 -D_POSIX_C_SOURCE=200809L $(WARNFLAGS) $(ASAN_CFLAGS) -Icsrc \
	    $(LUA_CFLAGS) $(UV_CFLAGS) -o $@ $< $(ASAN_BUILDDIR)/libtether.a \
	    $(ASAN_LDFLAGS) $(OOM_WRAP) -l$(LUA_PC) $(UV_LIBS) -lm

oom: deps
	@$(MAKE) --no-print-directory BUILDDIR=$(ASAN_BUILDDIR) CFLAGS='$(ASAN_CFLAGS)' \
	    LDFLAGS='$(ASAN_LDFLAGS)' staticlib
	@$(MAKE) --no-print-directory $(OOM_HOST)
	@echo "== memory exhaustion: $(OOM_MODES), every $(OOM_STRIDE). allocation ($(OOM_HOST))"
	@failed=0; \
	for p in $(OOM_PROGRAMS); do \
	  ASAN_OPTIONS='$(ASAN_OPTIONS)' UBSAN_OPTIONS='$(UBSAN_OPTIONS)' \
	  LSAN_OPTIONS='$(LSAN_OPTIONS)' timeout $(TEST_TIMEOUT) $(OOM_HOST) \
	    --modes $(OOM_MODES) --stride $(OOM_STRIDE) $$p \
	    >$(ASAN_BUILDDIR)/oom.out 2>$(ASAN_BUILDDIR)/oom.err || failed=1; \
	  grep -v '^PASS$$' $(ASAN_BUILDDIR)/oom.out; \
	  grep -v '^tether: ' $(ASAN_BUILDDIR)/oom.err >&2; \
	done; \
	if [ $$failed = 0 ]; then echo "make oom: every program passed"; else exit 1; fi

# ThreadSanitizer (make tsan): the worker-thread specs against a -fsanitize=thread build
# of the module, with the runtime preloaded into Debian's lua5.4.  That interpreter is
# not instrumented: TSan checks tether's C code (the pool, the jobs, the copies) and
# knows every lock through its pthread interceptors, but does not see the accesses the
# Lua VM makes to a worker's state.  Left out: the 10 000-call spec (tag burst), which
# takes minutes under TSan and checks memory (ASan and valgrind cover it), and the
# second-Ctrl+C spec (tag ctrl_c), whose child dies in TSan's own signal handling.
TSAN_BUILDDIR   ?= build-tsan
TSAN_CFLAGS     ?= -g -O1 -fno-omit-frame-pointer -fsanitize=thread
TSAN_LDFLAGS    ?= -fsanitize=thread
TSAN_OPTIONS    ?= halt_on_error=1:exitcode=66
TSAN_TIME_SCALE ?= 10
TSAN_SPECS      ?= $(sort $(wildcard spec/worker*_spec.lua))
TSAN_EXCLUDE    ?= burst,ctrl_c
ifeq ($(origin TSAN_RUNTIME),undefined)
TSAN_RUNTIME = $(eval TSAN_RUNTIME := $(shell $(CC) -print-file-name=libtsan.so))$(TSAN_RUNTIME)
endif

tsan: deps
	@$(MAKE) --no-print-directory BUILDDIR=$(TSAN_BUILDDIR) CFLAGS='$(TSAN_CFLAGS)' \
	    LDFLAGS='$(TSAN_LDFLAGS)' module
	@test -f "$(TSAN_RUNTIME)" || { echo "make: $(CC) has no libtsan.so (need gcc)" >&2; exit 1; }
	@echo "== worker specs under ThreadSanitizer ($(TSAN_BUILDDIR)/tether/core.so)"
	$(call test_env,$(TSAN_BUILDDIR)) TETHER_TEST_TIME_SCALE=$(TSAN_TIME_SCALE) \
	TSAN_OPTIONS='$(TSAN_OPTIONS)' \
	$(call timed,env LD_PRELOAD="$(TSAN_RUNTIME)" $(call busted_cmd,$(TSAN_BUILDDIR)) --exclude-tags=$(TSAN_EXCLUDE) $(TSAN_SPECS),TSan run)

# Runs all five checks, then fails if any of them did.
check: deps
	@$(MAKE) --no-print-directory all asan
	@failed=; \
	$(MAKE) --no-print-directory lint || failed="$$failed lint"; \
	$(MAKE) --no-print-directory asan-test || failed="$$failed ASan+UBSan"; \
	$(MAKE) --no-print-directory valgrind || failed="$$failed valgrind"; \
	$(MAKE) --no-print-directory oom || failed="$$failed oom"; \
	$(MAKE) --no-print-directory tsan || failed="$$failed TSan"; \
	if [ -n "$$failed" ]; then echo "make check: FAILED:$$failed" >&2; exit 1; fi; \
	echo "make check: all clean (lint: luacheck, luarocks lint, clang-format; ASan+UBSan; valgrind; oom; TSan)"

# The randomized stress spec at length: STRESS_N programs (default 28000, 20 times the
# spec's default) from a random seed, printed first; STRESS_SEED=<n> repeats a soak.
# The reduced known-bug tests (tag known_bug) are left out: `make test` runs them.
soak: all
	@seed=$${STRESS_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; \
	n=$${STRESS_N:-28000}; \
	echo "== soak: STRESS_SEED=$$seed STRESS_N=$$n (repeat: make soak STRESS_SEED=$$seed STRESS_N=$$n)"; \
	$(call test_env,$(BUILDDIR)) STRESS_SEED=$$seed STRESS_N=$$n \
	$(call timed,$(call busted_cmd,$(BUILDDIR)) --exclude-tags=known_bug spec/stress_spec.lua,make soak)

# ---- docs: the API reference (LDoc, config.ld) into build/docs ----------------------
# Installs LDoc the way `make deps` installs packages.  Debian's lua-ldoc needs
# lua-markdown for format = "markdown"; without it LDoc silently falls back to plain
# text, which this target refuses.

DOCS_PKGS ?= lua-ldoc lua-markdown

docs:
	@$(MAKE) --no-print-directory deps DEPS_PKGS='$(DOCS_PKGS)'
	@command -v ldoc >/dev/null 2>&1 || { echo "make docs: no ldoc command; install the Debian packages $(DOCS_PKGS)" >&2; exit 1; }
	rm -rf build/docs
	@out=$$(ldoc --fatalwarnings . 2>&1); status=$$?; printf '%s\n' "$$out"; \
	if printf '%s\n' "$$out" | grep -q 'falling back to text'; then \
	  echo "make docs: LDoc found no Markdown module; apt-get install lua-markdown" >&2; exit 1; fi; \
	exit $$status

# ---- demo, bench ----------------------------------------------------------------------

demo: deps
	@$(MAKE) --no-print-directory all
	LUA='$(LUA)' BUILDDIR='$(BUILDDIR)' bash examples/demo.sh

# W7's C programs: the echo client and the libuv echo server (the floor).
BENCH_BIN   = $(BUILDDIR)/bench
BENCH_PROGS = $(BENCH_BIN)/echo_client $(BENCH_BIN)/uv_echo_server

$(BENCH_BIN)/echo_client: bench/echo/client.c
	@mkdir -p $(@D)
	$(CC) -std=c99 -O2 $(WARNFLAGS) -o $@ $<

$(BENCH_BIN)/uv_echo_server: bench/echo/uv_server.c
	@mkdir -p $(@D)
	$(CC) -std=c99 -O2 $(WARNFLAGS) $(UV_CFLAGS) -o $@ $< $(UV_LIBS)

bench: all $(BENCH_PROGS)
	@if [ -f bench/run.lua ]; then \
	  $(call test_env,$(BUILDDIR)) BENCH_BIN='$(BENCH_BIN)' $(LUA) bench/run.lua; \
	else echo "bench: no bench/run.lua yet"; fi

# W7's instructions per round trip of each echo server, under valgrind (~2 min).
.PHONY: bench-w7-instructions
bench-w7-instructions: all $(BENCH_PROGS)
	@$(MAKE) --no-print-directory deps DEPS_PKGS=valgrind
	$(call test_env,$(BUILDDIR)) BENCH_BIN='$(BENCH_BIN)' $(LUA) bench/w7_echo.lua --instructions

# ---- lint -----------------------------------------------------------------------------

luacheck:
	$(LUACHECK) --no-color $(LUACHECK_DIRS)

# luacheck, the rockspec, and the C layout (.clang-format) when clang-format is there.
lint: luacheck
	$(LUAROCKS) lint rockspec/tether-scm-1.rockspec
	@if command -v $(CLANG_FORMAT) >/dev/null 2>&1; then \
	  echo "$(CLANG_FORMAT) --dry-run -Werror $(FORMAT_SRCS)"; \
	  $(CLANG_FORMAT) --dry-run -Werror $(FORMAT_SRCS); \
	else echo "lint: $(CLANG_FORMAT) not found, C layout not checked"; fi

# Rewrites the C sources in place to the .clang-format layout.
format:
	$(CLANG_FORMAT) -i $(FORMAT_SRCS)

# ---- install --------------------------------------------------------------------------

install: all
	install -d '$(DESTDIR)$(LIBDIR)/tether' '$(DESTDIR)$(LUADIR)/tether' \
	    '$(DESTDIR)$(INCLUDEDIR)' '$(DESTDIR)$(STATICLIBDIR)' '$(DESTDIR)$(PKGCONFIGDIR)'
	install -m 0755 $(MODULE) '$(DESTDIR)$(LIBDIR)/tether/core.so'
	install -m 0644 $(LUA_SRCS) '$(DESTDIR)$(LUADIR)/tether/'
	install -m 0644 csrc/tether.h '$(DESTDIR)$(INCLUDEDIR)/tether.h'
	install -m 0644 $(STATICLIB) '$(DESTDIR)$(STATICLIBDIR)/libtether.a'
	install -m 0644 $(PCFILE) '$(DESTDIR)$(PKGCONFIGDIR)/tether.pc'

uninstall:
	rm -f '$(DESTDIR)$(LIBDIR)/tether/core.so' \
	    $(patsubst lua/tether/%,'$(DESTDIR)$(LUADIR)/tether/%',$(LUA_SRCS)) \
	    '$(DESTDIR)$(INCLUDEDIR)/tether.h' '$(DESTDIR)$(STATICLIBDIR)/libtether.a' \
	    '$(DESTDIR)$(PKGCONFIGDIR)/tether.pc'
	rmdir '$(DESTDIR)$(LIBDIR)/tether' '$(DESTDIR)$(LUADIR)/tether' 2>/dev/null || true

# ---- LuaRocks -------------------------------------------------------------------------
# Builds the rock offline into build/rocks, then loads it from there (from /, so nothing
# of the working tree is on the path).  LuaRocks' builtin backend leaves csrc/*.o and
# ./tether/core.so behind in the working tree; they are removed afterwards.

ROCKS_TREE ?= $(CURDIR)/$(BUILDDIR)/rocks
ROCK_SMOKE  = require 'tether'; \
              local so = package.searchpath('tether.core', package.cpath); \
              assert(so and so:find('$(ROCKS_TREE)', 1, true), 'tether.core from ' .. tostring(so)); \
              require 'tether.core'; print('rock ok: ' .. so)

rock:
	$(LUAROCKS) --lua-version $(LUA_VERSION) make rockspec/tether-scm-1.rockspec \
	    --tree '$(ROCKS_TREE)'
	rm -f csrc/*.o tether/core.so
	@rmdir tether 2>/dev/null || true
	eval "$$($(LUAROCKS) --lua-version $(LUA_VERSION) --tree '$(ROCKS_TREE)' path)" && \
	  cd / && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 $(LUA) -e "$(ROCK_SMOKE)"

# Prints csrc/*.c as the rockspec's `sources` lines (spec/rockspec_spec.lua checks them).
rockspec-sources:
	@for f in $(SRCS); do printf '        "%s",\n' "$$f"; done

clean:
	rm -rf '$(BUILDDIR)' '$(ASAN_BUILDDIR)' '$(TSAN_BUILDDIR)'
	rm -f csrc/*.o tether/core.so
	@rmdir tether 2>/dev/null || true

help:
	@echo "targets: all (default), test, check, demo, deps, install, uninstall, rock, bench,"
	@echo "         lint, luacheck, format, asan, asan-test, valgrind, oom, tsan, rockspec-sources,"
	@echo "         clean"
	@echo "variables: LUA=$(LUA) LUA_PC=$(LUA_PC) PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)"
	@echo "           LIBDIR=$(LIBDIR) LUADIR=$(LUADIR) CFLAGS='$(CFLAGS)' WERROR=$(WERROR)"

FORCE:
