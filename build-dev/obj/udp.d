build-dev/obj/udp.o: csrc/udp.c csrc/internal.h csrc/heap.h csrc/queue.h \
 csrc/tether.h
csrc/internal.h:
csrc/heap.h:
csrc/queue.h:
csrc/tether.h:
