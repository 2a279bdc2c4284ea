build-dev/obj/event.o: csrc/event.c csrc/internal.h csrc/heap.h \
 csrc/queue.h csrc/tether.h
csrc/internal.h:
csrc/heap.h:
csrc/queue.h:
csrc/tether.h:
