build-dev/obj/transfer.o: csrc/transfer.c csrc/internal.h csrc/heap.h \
 csrc/queue.h csrc/tether.h
csrc/internal.h:
csrc/heap.h:
csrc/queue.h:
csrc/tether.h:
