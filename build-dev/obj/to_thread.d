build-dev/obj/to_thread.o: csrc/to_thread.c csrc/worker.h csrc/internal.h \
 csrc/heap.h csrc/queue.h csrc/tether.h
csrc/worker.h:
csrc/internal.h:
csrc/heap.h:
csrc/queue.h:
csrc/tether.h:
