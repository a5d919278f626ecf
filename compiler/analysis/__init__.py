"""Static figures of a model read off its IR: costs (`cost`) and the per-block table of
`nnc summary` (`summary`)."""
