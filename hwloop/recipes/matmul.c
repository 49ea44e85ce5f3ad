/* hwloop recipe "matmul": a naive i-j-k double-precision matrix multiply, C = A x B, whose
 * column walk over B has long reuse distances. Usage: matmul [n]. Prints a checksum. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 128;
    if (n <= 0) return 1;
    double *a = malloc(sizeof(double) * n * n);
    double *b = malloc(sizeof(double) * n * n);
    double *c = malloc(sizeof(double) * n * n);
    if (!a || !b || !c) return 1;
    for (int i = 0; i < n * n; i++) {
        a[i] = (double)(i % 17) * 0.25;
        b[i] = (double)(i % 13) - 6.0;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double sum = 0.0;
            for (int k = 0; k < n; k++) sum += a[i * n + k] * b[k * n + j];
            c[i * n + j] = sum;
        }
    double total = 0.0;
    for (int i = 0; i < n * n; i++) total += c[i];
    printf("matmul: n=%d, sum %.1f\n", n, total);
    free(a); free(b); free(c);
    return 0;
}
