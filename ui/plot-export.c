#define _GNU_SOURCE /* strtof_l */
#include "plot-export.h"

#include <errno.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cairo-pdf.h>
#include <cairo-svg.h>

#include "atomic-file.h"

#define CREATOR "PEER Workbench"

static const char *const extensions[] = {
    [PLOT_EXPORT_PNG] = "png",
    [PLOT_EXPORT_SVG] = "svg",
    [PLOT_EXPORT_PDF] = "pdf",
};

const char *plot_export_format_extension(PlotExportFormat format)
{
    return (unsigned)format < G_N_ELEMENTS(extensions) ? extensions[format] : "";
}

/* The text after the last dot of the file name, or NULL. */
static const char *extension_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    const char *dot = strrchr(name, '.');
    return dot && dot != name && dot[1] ? dot + 1 : NULL;
}

static bool lookup_format(const char *path, PlotExportFormat *format)
{
    const char *extension = extension_of(path);
    for (unsigned i = 0; extension && i < G_N_ELEMENTS(extensions); i++) {
        if (g_ascii_strcasecmp(extension, extensions[i]) == 0) {
            *format = (PlotExportFormat)i;
            return true;
        }
    }
    return false;
}

bool plot_export_path_is_image(const char *path)
{
    PlotExportFormat format;
    return lookup_format(path, &format);
}

bool plot_export_format_for_path(const char *path, PlotExportFormat *format, GError **error)
{
    if (lookup_format(path, format))
        return true;
    const char *extension = extension_of(path);
    if (extension)
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "Cannot export “%s”: plots are not written as .%s files. End the file name "
                    "in .png, .svg or .pdf.",
                    path, extension);
    else
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "Cannot export “%s”: the file name has no extension to choose the format "
                    "by. End it in .png, .svg or .pdf.",
                    path);
    return false;
}

bool plot_export_check_size(PlotExportFormat format, double width, double height, double scale,
                            GError **error)
{
    if (!isfinite(width) || !isfinite(height) || width < 1.0 || height < 1.0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "A plot of %g × %g cannot be drawn: width and height must be at least 1.",
                    width, height);
        return false;
    }
    if (format == PLOT_EXPORT_PNG) {
        if (!isfinite(scale) || scale <= 0.0 || scale > PLOT_EXPORT_MAX_SCALE) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "A scale of %g cannot be drawn: choose one above 0 and at most %g.",
                        scale, PLOT_EXPORT_MAX_SCALE);
            return false;
        }
        double pixels_wide = round(width * scale), pixels_high = round(height * scale);
        if (pixels_wide < 1.0 || pixels_high < 1.0 || pixels_wide > PLOT_EXPORT_MAX_PIXELS ||
            pixels_high > PLOT_EXPORT_MAX_PIXELS) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "A PNG of %.0f × %.0f pixels is too large to draw: each side may be at "
                        "most %d pixels. Choose a smaller size or scale, or export an SVG or a "
                        "PDF, which are sharp at any size.",
                        pixels_wide, pixels_high, PLOT_EXPORT_MAX_PIXELS);
            return false;
        }
        return true;
    }
    if (width > PLOT_EXPORT_MAX_UNITS || height > PLOT_EXPORT_MAX_UNITS) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "A page of %g × %g %s is larger than viewers open: each side may be at most "
                    "%g. Choose a smaller size.",
                    width, height, format == PLOT_EXPORT_PDF ? "points" : "pixels",
                    PLOT_EXPORT_MAX_UNITS);
        return false;
    }
    return true;
}

/* ---- drawing ------------------------------------------------------------------------------- */

static cairo_status_t append_to_array(void *closure, const unsigned char *data,
                                      unsigned int length)
{
    g_byte_array_append(closure, data, length);
    return CAIRO_STATUS_SUCCESS;
}

static bool cairo_ok(cairo_status_t status, GError **error)
{
    if (status == CAIRO_STATUS_SUCCESS)
        return true;
    g_set_error(error, G_IO_ERROR, status == CAIRO_STATUS_NO_MEMORY ? G_IO_ERROR_NO_SPACE
                                                                    : G_IO_ERROR_FAILED,
                "Could not draw the plot: %s.", cairo_status_to_string(status));
    return false;
}

/* Draws on surface and reports what went wrong on the way. */
static bool draw_on(cairo_surface_t *surface, double width, double height,
                    const PlotStyle *style, PlotRenderFunc render, void *data, GError **error)
{
    cairo_t *cr = cairo_create(surface);
    render(cr, width, height, style, data);
    cairo_status_t status = cairo_status(cr);
    cairo_destroy(cr);
    cairo_surface_flush(surface);
    if (status == CAIRO_STATUS_SUCCESS)
        status = cairo_surface_status(surface);
    return cairo_ok(status, error);
}

static GBytes *render_png(double width, double height, double scale, const PlotStyle *style,
                          PlotRenderFunc render, void *data, GError **error)
{
    int pixels_wide = (int)lround(width * scale), pixels_high = (int)lround(height * scale);
    cairo_surface_t *surface =
        cairo_image_surface_create(CAIRO_FORMAT_ARGB32, pixels_wide, pixels_high);
    cairo_surface_set_device_scale(surface, scale, scale);
    GByteArray *bytes = g_byte_array_new();
    bool ok = draw_on(surface, width, height, style, render, data, error) &&
              cairo_ok(cairo_surface_write_to_png_stream(surface, append_to_array, bytes), error);
    cairo_surface_destroy(surface);
    if (!ok) {
        g_byte_array_unref(bytes);
        return NULL;
    }
    return g_byte_array_free_to_bytes(bytes);
}

static GBytes *render_pdf(double width, double height, const PlotStyle *style,
                          PlotRenderFunc render, void *data, GError **error)
{
    GByteArray *bytes = g_byte_array_new();
    cairo_surface_t *surface =
        cairo_pdf_surface_create_for_stream(append_to_array, bytes, width, height);
    cairo_pdf_surface_set_metadata(surface, CAIRO_PDF_METADATA_CREATOR, CREATOR);
    bool ok = draw_on(surface, width, height, style, render, data, error);
    cairo_surface_finish(surface);
    ok = ok && cairo_ok(cairo_surface_status(surface), error);
    cairo_surface_destroy(surface);
    if (!ok) {
        g_byte_array_unref(bytes);
        return NULL;
    }
    return g_byte_array_free_to_bytes(bytes);
}

/* A number for an SVG attribute: three decimals at most, a '.' whatever the locale. */
static const char *svg_number(double value, char *buffer, size_t size)
{
    g_ascii_formatd(buffer, (int)size, "%.3f", value);
    if (strchr(buffer, '.')) {
        size_t length = strlen(buffer);
        while (buffer[length - 1] == '0')
            buffer[--length] = '\0';
        if (buffer[length - 1] == '.')
            buffer[--length] = '\0';
    }
    if (strcmp(buffer, "-0") == 0)
        strcpy(buffer, "0");
    return buffer;
}

/* Text for XML: escaped, without the control characters XML 1.0 does not allow. */
static char *xml_text(const char *text)
{
    GString *clean = g_string_new(NULL);
    for (const char *p = text; *p; p++)
        if ((unsigned char)*p >= 0x20 || *p == '\t')
            g_string_append_c(clean, *p);
    char *escaped = g_markup_escape_text(clean->str, -1);
    g_string_free(clean, TRUE);
    return escaped;
}

typedef struct {
    GString *elements;
    PlotTextFunc chained; /* the style's own, called too */
    void *chained_data;
    const PlotStyle *style;
    PlotText *measure; /* on a surface of its own: the string's width for textLength */
} SvgText;

static void collect_svg_text(const char *text, double x, double y, double angle, double size,
                             void *user_data)
{
    SvgText *svg = user_data;
    if (svg->chained)
        svg->chained(text, x, y, angle, size, svg->chained_data);
    if (!text || !g_utf8_validate(text, -1, NULL))
        return;
    char xs[G_ASCII_DTOSTR_BUF_SIZE], ys[G_ASCII_DTOSTR_BUF_SIZE];
    char sizes[G_ASCII_DTOSTR_BUF_SIZE], degrees[G_ASCII_DTOSTR_BUF_SIZE];
    svg_number(x, xs, sizeof xs);
    svg_number(y, ys, sizeof ys);
    char lengths[G_ASCII_DTOSTR_BUF_SIZE];
    double length = 0.0;
    plot_text_set_font(svg->measure, size / plot_style_font_pixels(svg->style), false);
    plot_text_measure(svg->measure, text, &length, NULL);
    g_autofree char *escaped = xml_text(text);
    /* textLength spans the words over their outlines whatever font the viewer substitutes, so
     * a selection or a search hit covers what is seen. */
    g_string_append_printf(svg->elements,
                           "<text x=\"%s\" y=\"%s\" font-size=\"%s\" textLength=\"%s\" "
                           "lengthAdjust=\"spacingAndGlyphs\"",
                           xs, ys, svg_number(size, sizes, sizeof sizes),
                           svg_number(length, lengths, sizeof lengths));
    if (angle != 0.0)
        g_string_append_printf(svg->elements, " transform=\"rotate(%s %s %s)\"",
                               svg_number(angle * 180.0 / G_PI, degrees, sizeof degrees), xs, ys);
    g_string_append_printf(svg->elements, ">%s</text>\n", escaped);
}

/* Whether a matrix "a,b,c,d,e,f" (SVG's order) magnifies both ways. */
static bool magnifies(const char *matrix)
{
    double m[6] = {0};
    const char *p = matrix;
    for (int i = 0; i < 6 && *p; i++) {
        char *end = NULL;
        m[i] = g_ascii_strtod(p, &end);
        if (end == p)
            return false;
        p = end + strspn(end, ", ");
    }
    return hypot(m[0], m[1]) > 1.0 && hypot(m[2], m[3]) > 1.0;
}

typedef struct {
    const guint8 *data;
    size_t size, offset;
} ReadBuffer;

static cairo_status_t read_from_buffer(void *closure, unsigned char *data, unsigned int length)
{
    ReadBuffer *buffer = closure;
    if (length > buffer->size - buffer->offset)
        return CAIRO_STATUS_READ_ERROR;
    memcpy(data, buffer->data + buffer->offset, length);
    buffer->offset += length;
    return CAIRO_STATUS_SUCCESS;
}

/* The base64 PNG with each pixel repeated factor × factor times, in base64; NULL when it does
 * not decode. */
static char *upsample_png(const char *base64, int factor)
{
    gsize size = 0;
    guchar *png = g_base64_decode(base64, &size);
    ReadBuffer buffer = {png, size, 0};
    cairo_surface_t *image = cairo_image_surface_create_from_png_stream(read_from_buffer, &buffer);
    g_free(png);
    char *encoded = NULL;
    if (cairo_surface_status(image) == CAIRO_STATUS_SUCCESS) {
        int width = cairo_image_surface_get_width(image);
        int height = cairo_image_surface_get_height(image);
        cairo_surface_t *large = cairo_image_surface_create(cairo_image_surface_get_format(image),
                                                            width * factor, height * factor);
        cairo_t *cr = cairo_create(large);
        cairo_scale(cr, factor, factor);
        cairo_set_source_surface(cr, image, 0, 0);
        cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
        cairo_set_operator(cr, CAIRO_OPERATOR_SOURCE);
        cairo_paint(cr);
        cairo_destroy(cr);
        GByteArray *bytes = g_byte_array_new();
        if (cairo_surface_write_to_png_stream(large, append_to_array, bytes) ==
            CAIRO_STATUS_SUCCESS)
            encoded = g_base64_encode(bytes->data, bytes->len);
        g_byte_array_unref(bytes);
        cairo_surface_destroy(large);
    }
    cairo_surface_destroy(image);
    return encoded;
}

/* Keeps crisp the images that every view magnifies. A renderer draws a magnified image, such as
 * a heat map's cells, with cairo's nearest filter so each cell keeps its edges, but cairo's SVG
 * surface writes no filter, and viewers smooth the cells into a blur. An image drawn magnified
 * both ways (by its pattern's transform or its use's) is taken to want crisp pixels: it is
 * marked so (SVG 1.1's optimizeSpeed, CSS's pixelated), and, for the viewers that heed neither,
 * its pixels are repeated in the same box, which leaves a viewer's smoothing only the last
 * fraction of each cell. */
static void keep_images_crisp(GString *document)
{
    static const char *const uses[] = {
        "<pattern [^>]*patternTransform=\"matrix\\(([^)]*)\\)\"[^>]*>\\s*"
        "<use xlink:href=\"#(image[0-9]+)\"",
        "<use xlink:href=\"#(image[0-9]+)\"[^>]*transform=\"matrix\\(([^)]*)\\)\"",
    };
    GHashTable *crisp = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    GHashTable *smooth = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (size_t u = 0; u < G_N_ELEMENTS(uses); u++) {
        GRegex *regex = g_regex_new(uses[u], G_REGEX_OPTIMIZE, 0, NULL);
        GMatchInfo *match = NULL;
        g_regex_match(regex, document->str, 0, &match);
        while (g_match_info_matches(match)) {
            char *matrix = g_match_info_fetch(match, u == 0 ? 1 : 2);
            char *image = g_match_info_fetch(match, u == 0 ? 2 : 1);
            g_hash_table_add(magnifies(matrix) ? crisp : smooth, image);
            g_free(matrix);
            g_match_info_next(match, NULL);
        }
        g_match_info_free(match);
        g_regex_unref(regex);
    }
    GHashTableIter iter;
    gpointer image;
    g_hash_table_iter_init(&iter, crisp);
    while (g_hash_table_iter_next(&iter, &image, NULL)) {
        if (g_hash_table_contains(smooth, image))
            continue;
        g_autofree char *pattern = g_strdup_printf(
            "<image id=\"%s\" width=\"([0-9]+)\" height=\"([0-9]+)\" "
            "xlink:href=\"data:image/png;base64,([^\"]*)\"",
            (const char *)image);
        GRegex *regex = g_regex_new(pattern, 0, 0, NULL);
        GMatchInfo *match = NULL;
        if (g_regex_match(regex, document->str, 0, &match)) {
            int start, end;
            g_match_info_fetch_pos(match, 0, &start, &end);
            g_autofree char *width = g_match_info_fetch(match, 1);
            g_autofree char *height = g_match_info_fetch(match, 2);
            g_autofree char *data = g_match_info_fetch(match, 3);
            /* About 2048 pixels a side: cells a sixteenth of a cell from sharp, in a PNG of
             * repeated rows that compresses to little more than the original. */
            int side = MAX(atoi(width), atoi(height));
            int factor = side > 0 ? MIN(16, 2048 / side) : 1;
            g_autofree char *large = factor >= 2 ? upsample_png(data, factor) : NULL;
            g_autofree char *replacement = g_strdup_printf(
                "<image id=\"%s\" image-rendering=\"optimizeSpeed\" "
                "style=\"image-rendering:pixelated\" width=\"%s\" height=\"%s\" "
                "xlink:href=\"data:image/png;base64,%s\"",
                (const char *)image, width, height, large ? large : data);
            g_string_erase(document, start, end - start);
            g_string_insert(document, start, replacement);
        }
        g_match_info_free(match);
        g_regex_unref(regex);
    }
    g_hash_table_unref(crisp);
    g_hash_table_unref(smooth);
}

/* The document cairo wrote, with crisp images kept crisp and the collected strings in a group of
 * their own before its end. */
static GBytes *finish_svg(GByteArray *bytes, const SvgText *svg, const PlotStyle *style,
                          GError **error)
{
    static const char end[] = "</svg>";
    const size_t end_length = strlen(end);
    const char *start = (const char *)bytes->data;
    const char *found = NULL;
    for (const char *p = start; p + end_length <= start + bytes->len; p++)
        if (memcmp(p, end, end_length) == 0)
            found = p;
    if (!found) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "Could not draw the plot: cairo wrote an SVG without an end.");
        return NULL;
    }
    g_autofree char *family = xml_text(style->font_family ? style->font_family : "Sans");
    GString *document = g_string_sized_new(bytes->len + svg->elements->len + 256);
    g_string_append_len(document, start, found - start);
    keep_images_crisp(document);
    if (svg->elements->len > 0)
        g_string_append_printf(document,
                               "<g id=\"plot-text\" fill=\"rgb(0%%,0%%,0%%)\" fill-opacity=\"0\" "
                               "font-family=\"%s, sans-serif\" xml:space=\"preserve\">\n%s</g>\n",
                               family, svg->elements->str);
    g_string_append_len(document, found, (gssize)(start + bytes->len - found));
    return g_string_free_to_bytes(document);
}

static GBytes *render_svg(double width, double height, const PlotStyle *style,
                          PlotRenderFunc render, void *data, GError **error)
{
    GByteArray *bytes = g_byte_array_new();
    cairo_surface_t *surface =
        cairo_svg_surface_create_for_stream(append_to_array, bytes, width, height);
    cairo_svg_surface_set_document_unit(surface, CAIRO_SVG_UNIT_PX);
    cairo_surface_t *scratch = cairo_recording_surface_create(CAIRO_CONTENT_COLOR_ALPHA, NULL);
    cairo_t *scratch_cr = cairo_create(scratch);
    SvgText svg = {g_string_new(NULL), style->text_func, style->text_data, style,
                   plot_text_new(scratch_cr, style)};
    PlotStyle hooked = *style;
    hooked.text_func = collect_svg_text;
    hooked.text_data = &svg;
    bool ok = draw_on(surface, width, height, &hooked, render, data, error);
    cairo_surface_finish(surface);
    ok = ok && cairo_ok(cairo_surface_status(surface), error);
    cairo_surface_destroy(surface);
    GBytes *document = ok ? finish_svg(bytes, &svg, style, error) : NULL;
    g_string_free(svg.elements, TRUE);
    plot_text_free(svg.measure);
    cairo_destroy(scratch_cr);
    cairo_surface_destroy(scratch);
    g_byte_array_unref(bytes);
    return document;
}

GBytes *plot_export_render(PlotExportFormat format, double width, double height, double scale,
                           const PlotStyle *style, PlotRenderFunc render, void *data,
                           GError **error)
{
    g_return_val_if_fail(style != NULL && render != NULL, NULL);
    if (!plot_export_check_size(format, width, height, scale, error))
        return NULL;
    switch (format) {
    case PLOT_EXPORT_PNG:
        return render_png(width, height, scale, style, render, data, error);
    case PLOT_EXPORT_SVG:
        return render_svg(width, height, style, render, data, error);
    case PLOT_EXPORT_PDF:
        return render_pdf(width, height, style, render, data, error);
    default:
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, "Unknown plot format %d.",
                    (int)format);
        return NULL;
    }
}

bool plot_export_image(const char *path, double width, double height, double scale,
                       const PlotStyle *style, PlotRenderFunc render, void *data, GError **error)
{
    PlotExportFormat format;
    if (!plot_export_format_for_path(path, &format, error))
        return false;
    GBytes *bytes = plot_export_render(format, width, height, scale, style, render, data, error);
    if (!bytes)
        return false;
    gsize size;
    const void *contents = g_bytes_get_data(bytes, &size);
    bool ok = plot_export_save(path, contents, size, error);
    g_bytes_unref(bytes);
    return ok;
}

/* ---- writing ------------------------------------------------------------------------------- */

/* Why a write failed, in words, and what to do about it. */
static void set_write_error(GError **error, const char *path, int saved_errno)
{
    g_autofree char *folder = g_path_get_dirname(path);
    g_autofree char *reason = NULL;
    const char *advice;
    switch (saved_errno) {
    case ENOSPC:
        reason = g_strdup("the disk is full");
        advice = "Free some space, or export to another disk.";
        break;
    case EDQUOT:
        reason = g_strdup("the disk quota is used up");
        advice = "Free some space, or export to another disk.";
        break;
    case EACCES:
    case EPERM:
        reason = g_strdup_printf("permission denied in “%s”", folder);
        advice = "Choose a folder you may write to.";
        break;
    case EROFS:
        reason = g_strdup_printf("“%s” is on a read-only disk", folder);
        advice = "Choose another folder.";
        break;
    case ENOENT:
        reason = g_strdup_printf("the folder “%s” does not exist", folder);
        advice = "Choose an existing folder.";
        break;
    case ENOTDIR:
        reason = g_strdup_printf("“%s” is not a folder", folder);
        advice = "Choose an existing folder.";
        break;
    case EISDIR:
        reason = g_strdup("that is a folder");
        advice = "Give a file name.";
        break;
    case EFBIG:
        reason = g_strdup("the file would be larger than this system allows");
        advice = "Export a smaller file, or to another disk.";
        break;
    case ENAMETOOLONG:
        reason = g_strdup("the file name is too long");
        advice = "Choose a shorter name.";
        break;
    default:
        reason = g_strdup(g_strerror(saved_errno));
        advice = "Choose another place.";
    }
    g_set_error(error, G_IO_ERROR, g_io_error_from_errno(saved_errno),
                "Could not write “%s”: %s. %s", path, reason, advice);
}

typedef struct {
    const void *bytes;
    size_t size;
} export_bytes;

static bool write_bytes(int fd, void *data)
{
    const export_bytes *contents = data;
    return atomic_file_write_all(fd, contents->bytes, contents->size);
}

bool plot_export_save(const char *path, const void *contents, size_t size, GError **error)
{
    g_return_val_if_fail(path != NULL && (contents != NULL || size == 0), false);
    if (!*path) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_FILENAME,
                    "Could not write the file: it has no name. Give a file name.");
        return false;
    }
    /* A link is followed, so the file it names is replaced rather than the link. */
    g_autofree char *resolved = g_file_test(path, G_FILE_TEST_IS_SYMLINK) ? realpath(path, NULL)
                                                                        : NULL;
    if (resolved)
        path = resolved;
    GStatBuf existing;
    bool exists = g_stat(path, &existing) == 0;
    if (exists && S_ISDIR(existing.st_mode)) {
        set_write_error(error, path, EISDIR);
        return false;
    }
    /* Renaming over a device or a pipe would replace it with a file. */
    if (exists && !S_ISREG(existing.st_mode)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_REGULAR_FILE,
                    "Could not write “%s”: it is not a regular file but a device, a pipe or a "
                    "socket. Choose another name.",
                    path);
        return false;
    }
    export_bytes bytes = { contents, size };
    atomic_file_step failed;
    if (atomic_file_replace(path, write_bytes, &bytes, &failed))
        return true;
    if (failed == ATOMIC_FILE_SYNC_FOLDER)
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                    "Wrote “%s”, but its folder could not be flushed to disk (%s): the file may "
                    "be lost if the computer stops now.",
                    path, g_strerror(errno));
    else
        set_write_error(error, path, errno);
    return false;
}

/* ---- CSV ----------------------------------------------------------------------------------- */

struct _PlotCsv {
    GString *text;
    bool in_row;
};

PlotCsv *plot_csv_new(void)
{
    PlotCsv *csv = g_new0(PlotCsv, 1);
    csv->text = g_string_new(NULL);
    return csv;
}

void plot_csv_free(PlotCsv *csv)
{
    if (!csv)
        return;
    g_string_free(csv->text, TRUE);
    g_free(csv);
}

static void start_field(PlotCsv *csv)
{
    if (csv->in_row)
        g_string_append_c(csv->text, ',');
    csv->in_row = true;
}

void plot_csv_add_text(PlotCsv *csv, const char *text)
{
    start_field(csv);
    if (!text)
        return;
    size_t length = strlen(text);
    bool quote = length == 0 || strpbrk(text, ",\"\r\n") != NULL || g_ascii_isspace(text[0]) ||
                 g_ascii_isspace(text[length - 1]);
    if (!quote) {
        g_string_append(csv->text, text);
        return;
    }
    g_string_append_c(csv->text, '"');
    for (const char *p = text; *p; p++) {
        if (*p == '"')
            g_string_append_c(csv->text, '"');
        g_string_append_c(csv->text, *p);
    }
    g_string_append_c(csv->text, '"');
}

static const char *format_special(double value)
{
    if (isnan(value))
        return "nan";
    return value > 0 ? "inf" : "-inf";
}

const char *plot_format_double_exact(double value, char *buffer)
{
    if (!isfinite(value))
        return strcpy(buffer, format_special(value));
    /* A value that some decimal of 15 digits or fewer reads back to prints as that decimal at
     * %.15g (the rounding to 15 digits lands on it): only the rest need 16 or 17. */
    static const char *const formats[] = {"%.15g", "%.16g", "%.17g"};
    for (size_t i = 0; i < G_N_ELEMENTS(formats); i++) {
        g_ascii_formatd(buffer, G_ASCII_DTOSTR_BUF_SIZE, formats[i], value);
        if (g_ascii_strtod(buffer, NULL) == value)
            break;
    }
    return buffer;
}

static locale_t c_locale(void)
{
    static locale_t locale;
    static gsize made;
    if (g_once_init_enter(&made)) {
        locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
        g_once_init_leave(&made, 1);
    }
    return locale;
}

const char *plot_format_float_exact(float value, char *buffer)
{
    if (!isfinite(value))
        return strcpy(buffer, format_special(value));
    static const char *const formats[] = {"%.6g", "%.7g", "%.8g", "%.9g"};
    locale_t locale = c_locale();
    for (size_t i = 0; i < G_N_ELEMENTS(formats); i++) {
        g_ascii_formatd(buffer, G_ASCII_DTOSTR_BUF_SIZE, formats[i], value);
        if (locale && strtof_l(buffer, NULL, locale) == value)
            break;
    }
    return buffer;
}

void plot_csv_add_double(PlotCsv *csv, double value)
{
    char buffer[G_ASCII_DTOSTR_BUF_SIZE];
    start_field(csv);
    g_string_append(csv->text, plot_format_double_exact(value, buffer));
}

void plot_csv_add_float(PlotCsv *csv, float value)
{
    char buffer[G_ASCII_DTOSTR_BUF_SIZE];
    start_field(csv);
    g_string_append(csv->text, plot_format_float_exact(value, buffer));
}

void plot_csv_add_int(PlotCsv *csv, int64_t value)
{
    start_field(csv);
    g_string_append_printf(csv->text, "%" G_GINT64_FORMAT, (gint64)value);
}

void plot_csv_add_empty(PlotCsv *csv)
{
    start_field(csv);
}

void plot_csv_end_row(PlotCsv *csv)
{
    g_string_append_c(csv->text, '\n');
    csv->in_row = false;
}

const char *plot_csv_get_text(const PlotCsv *csv, size_t *length)
{
    if (length)
        *length = csv->text->len;
    return csv->text->str;
}

bool plot_csv_save(const PlotCsv *csv, const char *path, GError **error)
{
    return plot_export_save(path, csv->text->str, csv->text->len, error);
}
