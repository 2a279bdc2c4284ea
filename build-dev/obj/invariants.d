build-dev/obj/invariants.o: csrc/invariants.c
