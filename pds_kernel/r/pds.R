# PDS Workspace: the project's extract in R, offline (attached as "pds" by Rprofile.site).
#
#   pds_tables()                                  # names of the extract's tables
#   prs <- pds_read("ER_PRS_F")                   # a data.table
#   pds_read("ER_PRS_F", columns = c("PERSON_ID", "PRS_NAT_REF"), n_max = 1000)
#
# Debian has no R binding of Arrow: the workspace's Python (pds_kernel.rtables) writes the table as
# CSV into R's temporary directory and data.table::fread reads it back (ISO dates become dates).
# Results leave the workspace only through an export request (ws.request_export in Python).

pds_python <- function() Sys.getenv("PDS_PYTHON", unset = "python")

pds_run <- function(args) {
  out <- suppressWarnings(system2(pds_python(), shQuote(c("-m", "pds_kernel.rtables", args)),
                                  stdout = TRUE, stderr = TRUE))
  status <- attr(out, "status")
  if (!is.null(status) && status != 0) stop(paste(out, collapse = "\n"), call. = FALSE)
  out
}

pds_tables <- function() pds_run("--list")

pds_read <- function(table, columns = NULL, n_max = NULL) {
  stopifnot(is.character(table), length(table) == 1)
  csv <- tempfile(fileext = ".csv")
  on.exit(unlink(csv))
  args <- c("--table", table, "--out", csv)
  if (!is.null(columns)) args <- c(args, "--columns", paste(columns, collapse = ","))
  if (!is.null(n_max)) args <- c(args, "--limit", as.character(as.integer(n_max)))
  pds_run(args)
  data.table::fread(csv, showProgress = FALSE)
}
