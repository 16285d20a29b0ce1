//! Rows → response XML with quick-xml: every value escaped, NULLs omitted, namespaces declared once.
//! It must not run SQL or decide what an empty result means.

use quick_xml::Writer;
use quick_xml::events::{BytesEnd, BytesStart, Event};

use super::{PrefixedName, ResponseShape};
use crate::datasource::Rows;

/// Renders `rows` as the response element; `Err` names a field's column the query did not return.
pub fn render(shape: &ResponseShape, rows: &Rows) -> Result<Vec<u8>, String> {
    let indexes = shape
        .fields
        .iter()
        .map(|f| {
            rows.columns
                .iter()
                .position(|c| c.eq_ignore_ascii_case(&f.column))
                .ok_or_else(|| f.column.clone())
        })
        .collect::<Result<Vec<usize>, String>>()?;
    let mut w = Writer::new(Vec::with_capacity(256));
    // Writing into a Vec cannot fail; the Results are io-shaped only.
    let _ = write(&mut w, shape, rows, &indexes);
    Ok(w.into_inner())
}

fn write(
    w: &mut Writer<Vec<u8>>,
    shape: &ResponseShape,
    rows: &Rows,
    indexes: &[usize],
) -> std::io::Result<()> {
    let root = shape.root.qualified();
    let decls: Vec<(String, &str)> = shape
        .namespaces
        .iter()
        .map(|(p, ns)| (format!("xmlns:{p}"), ns.as_str()))
        .collect();
    let start =
        BytesStart::new(root.as_str()).with_attributes(decls.iter().map(|(k, v)| (k.as_str(), *v)));
    w.write_event(Event::Start(start))?;
    for row in &rows.rows {
        if let Some(row_el) = &shape.row {
            w.write_event(Event::Start(BytesStart::new(row_el.qualified().as_str())))?;
        }
        for (field, &i) in shape.fields.iter().zip(indexes) {
            if let Some(Some(value)) = row.get(i) {
                write_text(w, &field.element, value)?;
            }
        }
        if let Some(row_el) = &shape.row {
            w.write_event(Event::End(BytesEnd::new(row_el.qualified().as_str())))?;
        }
        if shape.row.is_none() {
            break;
        }
    }
    w.write_event(Event::End(BytesEnd::new(root.as_str())))?;
    Ok(())
}

fn write_text(w: &mut Writer<Vec<u8>>, name: &PrefixedName, value: &str) -> std::io::Result<()> {
    let q = name.qualified();
    w.write_event(Event::Start(BytesStart::new(q.as_str())))?;
    w.write_event(Event::Text(crate::xml::text(value)))?;
    w.write_event(Event::End(BytesEnd::new(q.as_str())))?;
    Ok(())
}
