# Hostile peers, load and churn (issue 5): tests/fault/.
add_subdirectory(fault)
