build-dev/obj/fs.o: csrc/fs.c csrc/internal.h csrc/heap.h csrc/queue.h \
 csrc/tether.h
csrc/internal.h:
csrc/heap.h:
csrc/queue.h:
csrc/tether.h:
