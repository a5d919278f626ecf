"""Types of the IR: axis sizes (`sizes`) and named axes, tensor types and hyperparameter values
(`tensor`)."""
