build-dev/obj/embed.o: csrc/embed.c csrc/internal.h csrc/heap.h \
 csrc/queue.h csrc/tether.h
csrc/internal.h:
csrc/heap.h:
csrc/queue.h:
csrc/tether.h:
