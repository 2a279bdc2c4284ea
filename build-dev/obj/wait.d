build-dev/obj/wait.o: csrc/wait.c csrc/internal.h csrc/heap.h \
 csrc/queue.h csrc/tether.h
csrc/internal.h:
csrc/heap.h:
csrc/queue.h:
csrc/tether.h:
