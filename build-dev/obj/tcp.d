build-dev/obj/tcp.o: csrc/tcp.c csrc/internal.h csrc/heap.h csrc/queue.h \
 csrc/tether.h
csrc/internal.h:
csrc/heap.h:
csrc/queue.h:
csrc/tether.h:
