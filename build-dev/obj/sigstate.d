build-dev/obj/sigstate.o: csrc/sigstate.c csrc/internal.h csrc/heap.h \
 csrc/queue.h csrc/tether.h
csrc/internal.h:
csrc/heap.h:
csrc/queue.h:
csrc/tether.h:
