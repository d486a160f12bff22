/*
 * forktest.c - fork() while other threads are inside malloc/free.
 *
 * Four threads churn the allocator; the main thread forks repeatedly.  Each
 * child allocates, frees, uses stdio and starts a thread of its own, then
 * exits.  An allocator that forks while another thread holds one of its
 * locks (no pthread_atfork handling) deadlocks in the child: the child's
 * alarm() kills it and the parent reports the failure.  The parent has its
 * own alarm so the test as a whole cannot hang.
 *
 *   forktest [forks]
 */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int stop;

static void *churn(void *arg)
{
	unsigned s = (unsigned)(size_t)arg * 2654435761u + 1;
	void *slots[128] = { 0 };
	long ops = 0;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		s = s * 1103515245u + 12345u;
		unsigned i = (s >> 8) % 128;
		free(slots[i]);
		size_t n = (s >> 4) % 4 == 0 ? 20000 + (s >> 16) % 50000 : 8 + (s >> 16) % 2000;
		slots[i] = malloc(n);
		if (slots[i])
			memset(slots[i], (int)i, n < 64 ? n : 64);
		ops++;
	}
	for (int i = 0; i < 128; i++)
		free(slots[i]);
	return (void *)ops;
}

static void *child_thread(void *arg)
{
	char *p = malloc(1000);
	if (p)
		snprintf(p, 1000, "%s", (const char *)arg);
	return p;
}

static void child(int k)
{
	alarm(10);	/* a deadlocked child dies of SIGALRM */
	void *v[256];
	for (int i = 0; i < 256; i++)
		v[i] = malloc((size_t)(i * 61 + k) % 5000 + 1);
	for (int i = 0; i < 256; i++)
		free(v[i]);
	char *s = NULL;
	if (asprintf(&s, "child %d", k) < 0)
		_exit(3);
	pthread_t t;
	void *r = NULL;
	if (pthread_create(&t, NULL, child_thread, s) != 0 || pthread_join(t, &r) != 0)
		_exit(4);
	int ok = r && strcmp(r, s) == 0;
	free(r);
	free(s);
	_exit(ok ? 0 : 5);
}

/*
 * A child that leaves with _exit() skips the preload's exit handler, so its
 * shared-memory segment (gwmem.<pid>.<start>) stays behind like a crashed
 * process's.  Count and remove the ones of our children so test runs do not
 * fill /dev/shm.
 */
static int remove_child_segments(const pid_t *kids, int n)
{
	const char *dir = getenv("GWMEM_LEAK_DETECTION_SHM_DIR");
	char path[4096];
	int removed = 0;
	DIR *d;

	if (!dir || !*dir)
		dir = "/dev/shm";
	d = opendir(dir);
	if (!d)
		return 0;
	for (struct dirent *e; (e = readdir(d));) {
		int pid;
		if (sscanf(e->d_name, "gwmem.%d.", &pid) != 1)
			continue;
		for (int i = 0; i < n; i++) {
			if (kids[i] == pid) {
				snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
				removed += unlink(path) == 0;
				break;
			}
		}
	}
	closedir(d);
	return removed;
}

int main(int argc, char **argv)
{
	int forks = argc > 1 ? atoi(argv[1]) : 200;
	pthread_t t[4];
	int failed = 0, done = 0;
	pid_t *kids = calloc((size_t)(forks > 0 ? forks : 1), sizeof(pid_t));

	alarm(60);
	for (int i = 0; i < 4; i++)
		if (pthread_create(&t[i], NULL, churn, (void *)(size_t)(i + 1)) != 0)
			return 1;
	for (int k = 0; k < forks; k++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			failed++;
			break;
		}
		if (pid == 0)
			child(k);
		kids[k] = pid;
		int st = 0;
		if (waitpid(pid, &st, 0) != pid) {
			perror("waitpid");
			failed++;
			continue;
		}
		if (WIFSIGNALED(st)) {
			fprintf(stderr, "child %d killed by signal %d%s\n", k, WTERMSIG(st),
				WTERMSIG(st) == SIGALRM ? " (deadlock after fork)" : "");
			failed++;
		} else if (WEXITSTATUS(st) != 0) {
			fprintf(stderr, "child %d exited with %d\n", k, WEXITSTATUS(st));
			failed++;
		}
		done++;
	}
	atomic_store(&stop, 1);
	long ops = 0;
	for (int i = 0; i < 4; i++) {
		void *r;
		pthread_join(t[i], &r);
		ops += (long)r;
	}
	int left = remove_child_segments(kids, done);
	free(kids);
	printf("fork: %d forks while 4 threads ran %ld malloc/free: %d children failed "
	       "(deadlock or error); %d segments of _exit()ed children removed\n", done, ops, failed,
	       left);
	return failed ? 1 : 0;
}
