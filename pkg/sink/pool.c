/* pool.c: the sink's converting threads (see sink_int.h). Each thread takes the oldest queued
 * chunk, converts its records with its own pc_sink_map (parser state and scratch), marks it
 * done; the submitter collects chunks in the order it submitted them. No I/O, no logging:
 * records in, COPY lines out. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sink_int.h"

struct pc_sink_pool {
    pthread_mutex_t mu;
    pthread_cond_t work; /* a chunk was queued, or stop */
    pthread_cond_t done; /* a chunk was converted */
    pc_sink_chunk *head, *tail;
    bool stop;
    const pc_sink_col *cols;
    size_t ncols;
    pthread_t *threads;
    size_t nthreads;
};

static void convert_chunk(pc_sink_chunk *c, pc_sink_map *map)
{
    if (!map) {
        c->rc = PC_ENOMEM;
        return;
    }
    pc_sink_map_set_binary(map, c->binary);
    for (size_t i = 0; i < c->n && !c->rc; i++) {
        size_t before = c->out.len;
        c->rc = pc_sink_map_line(map, c->payload[i], c->plen[i],
                                 c->seq0 >= 0 ? c->seq0 + (long long)i : -1, &c->out,
                                 &c->reason[i]);
        c->len[i] = c->out.len - before;
    }
}

static void *worker(void *arg)
{
    pc_sink_pool *p = arg;
    pc_sink_map *map = NULL;
    pc_sink_map_new(&map, p->cols, p->ncols); /* NULL (out of memory): chunks fail with ENOMEM */
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && !p->head)
            pthread_cond_wait(&p->work, &p->mu);
        if (!p->head)
            break; /* stopping and nothing queued */
        pc_sink_chunk *c = p->head;
        p->head = c->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        convert_chunk(c, map);
        pthread_mutex_lock(&p->mu);
        c->done = true;
        pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    pc_sink_map_free(map);
    return NULL;
}

int pc_sink_pool_new(pc_sink_pool **out, size_t nthreads, const pc_sink_col *cols, size_t ncols,
                     pc_error *err)
{
    *out = NULL;
    pc_sink_pool *p = calloc(1, sizeof *p);
    if (nthreads < 1)
        nthreads = 1;
    if (!p || !(p->threads = calloc(nthreads, sizeof *p->threads))) {
        free(p);
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    p->cols = cols;
    p->ncols = ncols;
    for (size_t i = 0; i < nthreads; i++) {
        int e = pthread_create(&p->threads[i], NULL, worker, p);
        if (e != 0) {
            if (p->nthreads > 0)
                break; /* fewer threads than asked: still works */
            pc_sink_pool_free(p);
            return pc_error_set(err, PC_ENOMEM,
                                "cannot start a converting thread: %s (the process's thread or "
                                "memory limit?)",
                                strerror(e));
        }
        p->nthreads++;
    }
    *out = p;
    return 0;
}

void pc_sink_chunk_reset(pc_sink_chunk *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->reason[i]);
        c->reason[i] = NULL;
    }
    c->n = 0;
    c->out.len = 0;
    c->rc = 0;
    c->done = false;
    c->next = NULL;
}

void pc_sink_pool_submit(pc_sink_pool *p, pc_sink_chunk *c)
{
    c->out.len = 0;
    c->rc = 0;
    c->done = false;
    c->next = NULL;
    for (size_t i = 0; i < c->n; i++) {
        c->len[i] = 0;
        c->reason[i] = NULL;
    }
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = c;
    else
        p->head = c;
    p->tail = c;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
}

bool pc_sink_pool_done(pc_sink_pool *p, pc_sink_chunk *c, bool wait)
{
    pthread_mutex_lock(&p->mu);
    while (wait && !c->done)
        pthread_cond_wait(&p->done, &p->mu);
    bool done = c->done;
    pthread_mutex_unlock(&p->mu);
    return done;
}

void pc_sink_pool_free(pc_sink_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}
