"""The benchmark datasets: real images, speech and words, damaged realistically, written in the data contract."""
