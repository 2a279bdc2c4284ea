build-dev/obj/worker_state.o: csrc/worker_state.c csrc/worker.h \
 csrc/internal.h csrc/heap.h csrc/queue.h csrc/tether.h
csrc/worker.h:
csrc/internal.h:
csrc/heap.h:
csrc/queue.h:
csrc/tether.h:
