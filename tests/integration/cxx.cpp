/*
 * cxx.cpp - C++ allocation paths over the interposed malloc: new/delete,
 * new[]/delete[], aligned new (C++17), containers, strings, exceptions
 * (__cxa_allocate_exception) and std::thread.
 */
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

static int failures;
#define CHECK(c)                                                             \
	do {                                                                 \
		if (!(c)) {                                                  \
			failures++;                                          \
			std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); \
		}                                                            \
	} while (0)

struct alignas(64) Line {
	char bytes[64];
};
struct alignas(4096) Page {
	char bytes[4096];
};

static void work(int seed, long *count)
{
	std::map<int, std::string> m;
	for (int i = 0; i < 5000; i++)
		m[(i * 7919 + seed) % 10007] = std::string(static_cast<size_t>(i % 300), 'x');
	std::unordered_map<std::string, std::vector<int>> um;
	for (int i = 0; i < 3000; i++)
		um["key-" + std::to_string(i % 700)].push_back(i);
	std::vector<std::unique_ptr<std::string>> v;
	for (int i = 0; i < 10000; i++)
		v.emplace_back(new std::string(std::to_string(i) + std::string(50, 'y')));
	size_t total = 0;
	for (auto &p : v)
		total += p->size();
	*count = static_cast<long>(m.size() + um.size() + total);
}

int main()
{
	int *one = new int(42);
	CHECK(*one == 42);
	delete one;
	char *arr = new char[100000];
	std::memset(arr, 1, 100000);
	delete[] arr;

	for (int i = 0; i < 100; i++) {
		Line *l = new Line;
		CHECK(reinterpret_cast<uintptr_t>(l) % 64 == 0);
		delete l;
		Page *p = new Page[3];
		CHECK(reinterpret_cast<uintptr_t>(p) % 4096 == 0);
		delete[] p;
		void *raw = ::operator new(1000, std::align_val_t(256));
		CHECK(reinterpret_cast<uintptr_t>(raw) % 256 == 0);
		::operator delete(raw, std::align_val_t(256));
		void *big = ::operator new(i * 100 + 1, std::align_val_t(65536));
		CHECK(reinterpret_cast<uintptr_t>(big) % 65536 == 0);
		::operator delete(big, std::align_val_t(65536));
	}
	/* nothrow new of an impossible size returns nullptr */
	std::size_t huge = SIZE_MAX / 2;
	char *none = new (std::nothrow) char[huge];
	CHECK(none == nullptr);
	bool threw = false;
	try {
		std::vector<char> hv(huge);
	} catch (const std::bad_alloc &) {
		threw = true;
	} catch (const std::length_error &) {
		threw = true;
	}
	CHECK(threw);

	int caught = 0;
	for (int i = 0; i < 1000; i++) {
		try {
			throw std::runtime_error("error number " + std::to_string(i));
		} catch (const std::exception &e) {
			caught += std::strncmp(e.what(), "error number", 12) == 0;
		}
	}
	CHECK(caught == 1000);

	std::string s;
	for (int i = 0; i < 20000; i++)
		s += static_cast<char>('a' + i % 26);
	CHECK(s.size() == 20000 && s[25] == 'z');

	long counts[4] = {0, 0, 0, 0};
	std::vector<std::thread> ts;
	for (int i = 0; i < 4; i++)
		ts.emplace_back(work, i, &counts[i]);
	for (auto &t : ts)
		t.join();
	for (int i = 0; i < 4; i++)
		CHECK(counts[i] == counts[0]);
	auto sp = std::make_shared<std::vector<double>>(1000, 1.5);
	std::weak_ptr<std::vector<double>> wp = sp;
	sp.reset();
	CHECK(wp.expired());

	std::printf("c++: new/delete, new[]/delete[], aligned new 64..65536, nothrow/bad_alloc, "
		    "1000 exceptions, string/vector/map/unordered_map in 4 threads (result %ld); "
		    "%d failures\n", counts[0], failures);
	return failures ? 1 : 0;
}
