build-dev/obj/luv.o: csrc/luv.c csrc/internal.h csrc/heap.h csrc/queue.h \
 csrc/tether.h
csrc/internal.h:
csrc/heap.h:
csrc/queue.h:
csrc/tether.h:
