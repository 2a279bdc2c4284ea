build-dev/obj/worker.o: csrc/worker.c csrc/worker.h csrc/internal.h \
 csrc/heap.h csrc/queue.h csrc/tether.h
csrc/worker.h:
csrc/internal.h:
csrc/heap.h:
csrc/queue.h:
csrc/tether.h:
