package main

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// series is the samples of one figure.
type series []time.Duration

func (s series) sorted() series {
	c := append(series(nil), s...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c
}

// median of the samples (the mean of the middle two for an even count); 0 when empty.
func (s series) median() time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := s.sorted()
	n := len(c)
	if n%2 == 1 {
		return c[n/2]
	}
	return (c[n/2-1] + c[n/2]) / 2
}

func (s series) min() time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s.sorted()[0]
}

func (s series) max() time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s.sorted()[len(s)-1]
}

// cell is "median (min–max)", or "failed" without samples.
func (s series) cell() string {
	switch len(s) {
	case 0:
		return "no sample"
	case 1:
		return fmtDur(s[0])
	}
	return fmt.Sprintf("%s (%s–%s)", fmtDur(s.median()), fmtDur(s.min()), fmtDur(s.max()))
}

// list is every sample, in order.
func (s series) list() string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmtDur(d)
	}
	return strings.Join(parts, ", ")
}

// ratio of the medians a/b, "–" when either is missing.
func ratio(a, b series) (float64, string) {
	if len(a) == 0 || len(b) == 0 || b.median() == 0 {
		return 0, "–"
	}
	r := float64(a.median()) / float64(b.median())
	return r, fmt.Sprintf("%.2f", r)
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
}

// sizes are byte counts.
type sizes []int64

func (s sizes) cell() string {
	if len(s) == 0 {
		return "no sample"
	}
	c := append(sizes(nil), s...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	n := len(c)
	med := c[n/2]
	if n%2 == 0 {
		med = (c[n/2-1] + c[n/2]) / 2
	}
	if n == 1 {
		return fmtBytes(med)
	}
	return fmt.Sprintf("%s (%s–%s)", fmtBytes(med), fmtBytes(c[0]), fmtBytes(c[n-1]))
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}
