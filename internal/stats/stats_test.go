package stats

import "testing"

func TestMedian(t *testing.T) {
	tests := []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{7}, 7},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{1, 1000, 2}, 2},
	}
	for _, tt := range tests {
		xs := append([]float64(nil), tt.xs...)
		if got := Median(xs); got != tt.want {
			t.Errorf("Median(%v) = %v, want %v", tt.xs, got, tt.want)
		}
		for i := range xs {
			if xs[i] != tt.xs[i] {
				t.Errorf("Median reordered its input: %v", xs)
			}
		}
	}
}
